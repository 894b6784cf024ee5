"""`voicebot run` end to end against a sipp UAS on 127.0.0.1, including a kill -9 in mid-campaign.

The sipp UAS answers every call, lets it run 3 s and hangs up (the script's
outcome is then customer_hangup, final). It logs every INVITE, whose
X-Voicebot-Attempt header names the attempt: so the test sees exactly which
attempts reached the far end, and how often.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC
from pathlib import Path

from conftest import group_alive, invites_by_attempt, query

DATA = Path(__file__).parent / "data" / "campaign"


def _dialplan(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text((DATA / "campaign.yaml").read_text().replace("127.0.0.1:5999", f"127.0.0.1:{port}"))
    return path


def _run_cmd(dialplan: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "voicebot.cli", "run", str(dialplan), "--contacts", str(DATA / "contacts.csv"), "--db", str(db)]


def test_a_killed_run_resumes_with_every_contact_attempted_exactly_as_it_should(sipp, tmp_path: Path, capsys) -> None:
    trace = tmp_path / "invites.log"
    port = sipp("uas_answer", "-d", "3000", "-m", "500", "-l", "100", "-trace_msg", "-message_file", str(trace))
    dialplan = _dialplan(tmp_path, port)
    db = tmp_path / "campaign.db"

    # first run: killed with SIGKILL once some calls have ended and others are up
    first = subprocess.Popen(
        _run_cmd(dialplan, db), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert first.poll() is None, f"the first run ended by itself ({first.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "the first run never reached mid-campaign"
            if db.exists():
                try:
                    states = dict(query(db, "SELECT state, COUNT(*) FROM attempts GROUP BY state"))
                except sqlite3.OperationalError:
                    states = {}
                if states.get("ended", 0) >= 6 and states.get("dialling", 0) + states.get("created", 0) >= 2:
                    break
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)  # the runner we started, by its pid
        first.wait(timeout=10)
        # its model host and media workers see their pipes close and exit by themselves
        deadline = time.monotonic() + 20
        while group_alive(first.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = group_alive(first.pid)
    finally:
        if first.poll() is None:
            first.kill()
        for pid in group_alive(first.pid):
            os.kill(pid, signal.SIGKILL)  # processes of the run this test started
    assert not orphans, f"processes of the killed run still alive after 20 s: {orphans}"
    open_before = query(db, "SELECT id FROM attempts WHERE state IN ('created', 'dialling')")
    assert open_before, "the kill found no call in progress"

    # second run: resumes and finishes
    second = subprocess.run(_run_cmd(dialplan, db), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    contacts = query(db, "SELECT id, phone, status, attempts FROM contacts")
    attempts = query(db, "SELECT id, contact_id, seq, state, outcome FROM attempts ORDER BY contact_id, seq")
    by_contact = defaultdict(list)
    for a in attempts:
        by_contact[a[1]].append(a)
    assert len(contacts) == 24
    for cid, phone, status, n in contacts:
        mine = by_contact[cid]
        assert status == "done", (phone, mine)
        assert n == len(mine) and [a[2] for a in mine] == list(range(1, n + 1)), (phone, mine)  # none lost
        # every attempt but the last was cut off by the kill; the last one ended normally
        assert [a[3] for a in mine[:-1]] == ["interrupted"] * (n - 1), (phone, mine)
        assert (mine[-1][3], mine[-1][4]) == ("ended", "customer_hangup"), (phone, mine)
    interrupted = {a[0] for a in attempts if a[3] == "interrupted"}
    assert interrupted == {row[0] for row in open_before}

    # at the far end: no attempt id was ever dialled twice; every ended attempt was dialled once
    invites = invites_by_attempt(trace)
    assert all(len(call_ids) == 1 for call_ids in invites.values()), {a: c for a, c in invites.items() if len(c) > 1}
    ended = {a[0] for a in attempts if a[3] == "ended"}
    assert ended <= set(invites)
    assert set(invites) <= ended | interrupted
    outcomes = Counter(a[4] for a in attempts)
    with capsys.disabled():
        print(f"\n  kill -9 with {len(open_before)} calls up; after the rerun: {dict(outcomes)}")

    # the export has one row per attempt
    export = tmp_path / "results.csv"
    subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "export", str(db), "--csv", str(export)], check=True, capture_output=True, timeout=60
    )
    with export.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(attempts)


def test_busy_numbers_are_retried_by_the_policy_until_max_attempts(sipp, tmp_path: Path) -> None:
    port = sipp("uas_486", "-m", "500")
    dialplan = _dialplan(tmp_path, port)  # retry: busy after 1 s, at most 3 attempts
    db = tmp_path / "busy.db"
    done = subprocess.run(_run_cmd(dialplan, db), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    per_contact = query(db, "SELECT contact_id, COUNT(*), MIN(outcome), MAX(outcome) FROM attempts GROUP BY contact_id")
    assert len(per_contact) == 24 and all(row[1:] == (3, "busy", "busy") for row in per_contact), per_contact
    gaps = query(
        db,
        """SELECT b.created_at - a.ended_at FROM attempts a JOIN attempts b
                         ON a.contact_id = b.contact_id AND b.seq = a.seq + 1""",
    )
    assert min(g for (g,) in gaps) >= 1.0  # never before the retry delay
    assert query(db, "SELECT sip_code, COUNT(*) FROM call_records GROUP BY sip_code") == [(486, 72)]


def test_ctrl_c_pauses_after_the_calls_in_progress_and_a_rerun_resumes(sipp, tmp_path: Path) -> None:
    port = sipp("uas_answer", "-d", "3000", "-m", "500", "-l", "100")
    dialplan = _dialplan(tmp_path, port)
    db = tmp_path / "pause.db"
    first = _run_with_calls_up(dialplan, db, tmp_path)
    try:
        first.send_signal(signal.SIGINT)
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 3, output[-2000:]  # paused
    assert "paused: run the same command again to resume" in output
    states = dict(query(db, "SELECT state, COUNT(*) FROM attempts GROUP BY state"))
    assert set(states) == {"ended"}, states  # the calls in progress finished; none was cut off
    assert query(db, "SELECT COUNT(*) FROM contacts WHERE status = 'pending'")[0][0] > 0
    second = subprocess.run(_run_cmd(dialplan, db), cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-2000:]
    assert query(db, "SELECT status, COUNT(*), SUM(attempts) FROM contacts GROUP BY status") == [("done", 24, 24)]


def _run_with_calls_up(dialplan: Path, db: Path, cwd: Path) -> subprocess.Popen:
    """`voicebot run` started, once it has at least 4 calls in progress (killed if it never gets there)."""
    run = subprocess.Popen(_run_cmd(dialplan, db), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (db.exists() and _open_attempts(db) >= 4):
        if run.poll() is not None or time.monotonic() > deadline:
            run.kill()
            raise AssertionError(f"the run never got calls up: {run.communicate()[0][-2000:]}")
        time.sleep(0.05)
    return run


def _open_attempts(db: Path) -> int:
    try:
        return query(db, "SELECT COUNT(*) FROM attempts WHERE state IN ('created', 'dialling')")[0][0]
    except sqlite3.OperationalError:
        return 0


def test_outside_the_calling_window_nothing_is_dialled_and_contacts_wait_for_it(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    opens = (now + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    closes = opens + timedelta(hours=1)
    text = (
        (DATA / "campaign.yaml")
        .read_text()
        .replace(
            'calling_window: {start: "00:00", end: "24:00", days: [mon, tue, wed, thu, fri, sat, sun], timezone: UTC}',
            f'calling_window: {{start: "{opens:%H:%M}", end: "{closes:%H:%M}", days: [mon, tue, wed, thu, fri, sat, sun], timezone: UTC}}',
        )
    )
    dialplan = tmp_path / "closed.yaml"
    dialplan.write_text(text)
    db = tmp_path / "closed.db"
    done = subprocess.run(_run_cmd(dialplan, db) + ["--until-idle"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "nothing more is due now" in done.stdout
    assert query(db, "SELECT COUNT(*) FROM attempts") == [(0,)]
    waits = {round(at) for (at,) in query(db, "SELECT next_at FROM contacts")}
    assert waits == {round(opens.timestamp())}, (waits, opens)


def test_sigterm_ends_the_calls_in_progress_at_once_and_records_them_as_stopped(sipp, tmp_path: Path) -> None:
    port = sipp("uas_answer", "-d", "20000", "-m", "500", "-l", "100")  # calls that would last 20 s
    dialplan = _dialplan(tmp_path, port)
    db = tmp_path / "stop.db"
    run = _run_with_calls_up(dialplan, db, tmp_path)
    try:
        time.sleep(1.0)  # answered by now
        stopped_at = time.monotonic()
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
        took_s = time.monotonic() - stopped_at
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 3, output[-2000:]
    assert took_s < 15  # not the 20 s the calls would have lasted
    ended = query(db, "SELECT state, outcome FROM attempts")
    assert ended and all(state == "ended" for state, _ in ended), ended
    assert {outcome for _, outcome in ended} == {"stopped"}, ended  # hung up by the dialer, recorded as such
