"""A campaign the size of a real list: 20,000 contacts, the first INVITE within 10 s of the start.

Before prompts were rendered just in time, `voicebot run` rendered every contact's greeting
before its first dial (420 prompts in 100 s at 100,000 contacts, 0 calls). Here the run is
started as a user starts it, against a sipp UAS that answers every INVITE busy, and the
clock runs from the process start to the first INVITE sipp logs. The run is then stopped
(SIGTERM, by its pid) and its JSON-lines log must already say what it did.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog
from conftest import group_alive, query

from voicebot.bench.contacts import write_synthetic_contacts

DATA = Path(__file__).parent / "data" / "campaign"
CONTACTS = 20_000
FIRST_INVITE_S = 10.0
BUDGET_MB = 0.5  # the static prompts take ~0.13 MB: the contacts' greetings must share the rest


def test_twenty_thousand_contacts_see_the_first_invite_within_10_s_and_the_log_says_why(sipp, tmp_path: Path) -> None:
    contacts = write_synthetic_contacts(tmp_path / "big.csv", CONTACTS)
    trace = tmp_path / "invites.log"
    port = sipp("uas_486", "-m", "200", "-trace_msg", "-message_file", str(trace))
    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text().replace("127.0.0.1:5999", f"127.0.0.1:{port}"))
    db = tmp_path / "big.db"

    budget = ["--prompt-cache-mb", str(BUDGET_MB)]
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "run", str(dialplan), "--contacts", str(contacts), "--db", str(db), *budget],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    first_invite_s = None
    try:
        while time.monotonic() - started < FIRST_INVITE_S + 20:  # bounded: a slow run fails below, with its figure
            if trace.exists() and "INVITE sip:" in trace.read_text(errors="replace"):
                first_invite_s = time.monotonic() - started
                break
            assert run.poll() is None, f"the run ended ({run.returncode}) before dialling: {run.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            time.sleep(0.05)
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGTERM)  # the run we started: calls in progress end now
        try:
            run.wait(timeout=60)
        finally:
            for pid in group_alive(run.pid):
                os.kill(pid, signal.SIGKILL)
    assert first_invite_s is not None and first_invite_s <= FIRST_INVITE_S, f"first INVITE after {first_invite_s} s"

    assert query(db, "SELECT COUNT(*) FROM contacts") == [(CONTACTS,)]
    log = [json.loads(line) for line in db.with_suffix(".log").read_text().splitlines()]
    events = [e["event"] for e in log]
    for said in ("run_preparing", "import_started", "import_finished", "static_prompts_rendered", "dialling"):
        assert said in events, f"the log never said {said}: {events[:20]}"
    assert events.index("import_finished") < events.index("dialling")

    # the prompt cache: under its budget all along, and said so in the log
    prompts = [e["prompts"] for e in log if e["event"] == "progress"]
    assert prompts and prompts[-1]["budget_bytes"] == BUDGET_MB * 1e6
    assert max(p["peak_bytes"] for p in prompts) <= BUDGET_MB * 1e6
    on_disk = sum(f.stat().st_size for f in (tmp_path / "big.prompts").glob("*/*.pcm"))
    assert 0 < on_disk <= BUDGET_MB * 1e6


def test_a_long_import_says_how_far_it_got_while_it_runs(tmp_path: Path, monkeypatch) -> None:
    from voicebot.campaign import importer, runner
    from voicebot.campaign.runner import CampaignRun, RunOptions
    from voicebot.logs import log_to_file

    monkeypatch.setattr(runner, "IMPORT_LOG_EVERY_S", 0.0)
    monkeypatch.setattr(importer, "BATCH_ROWS", 1000)
    contacts = write_synthetic_contacts(tmp_path / "list.csv", 3000)
    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text())
    log = tmp_path / "run.log"
    logger = logging.getLogger("voicebot")
    saved = (structlog.get_config(), logger.handlers[:], logger.level, logger.propagate)
    log_to_file(log)  # as `voicebot run` does; this process's logging is put back below
    bar: list[tuple[int, int]] = []
    run = CampaignRun(RunOptions(dialplan, tmp_path / "run.db", contacts, broker=None), on_import=lambda d, t: bar.append((d, t)))
    try:
        run.prepare()
    finally:
        if run.prompts is not None:
            run.prompts.close()
        run.close()
        structlog.configure(**saved[0])
        logger.handlers[:], logger.level, logger.propagate = saved[1], saved[2], saved[3]
    said = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["rows"], e["of"]) for e in said if e["event"] == "import_progress"] == [(1000, 3000), (2000, 3000), (3000, 3000)]
    assert bar == [(1000, 3000), (2000, 3000), (3000, 3000)]
