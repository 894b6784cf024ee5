"""The campaign store on real SQLite files: idempotent imports, DNC, the attempt life cycle,
crash recovery (including a child process killed with SIGKILL), refusals and export."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from voicebot.campaign.store import AttemptResult, CampaignStore, StoreError

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_780_000_000.0  # a fixed "now" (2026-05-28): the store never reads the clock for decisions


@dataclass(frozen=True)
class FakeContact:
    """The shape of voicebot.campaign.contacts.Contact (the store only duck-types it)."""

    phone: str
    fields: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    priority: int = 0
    timezone: str | None = None
    row: int = 2
    source: str = "leads.csv"
    extension: str = ""


def contacts(n: int) -> list[FakeContact]:
    return [FakeContact(f"+1555000{i:04d}", {"first_name": f"N{i}"}, row=i + 2) for i in range(n)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "campaign.sqlite"


@pytest.fixture
def store(db: Path):
    s = CampaignStore.open(db, "spring", "dialplans/spring.yaml")
    yield s
    s.close()


def by_phone(store: CampaignStore, phone: str):
    for cid in range(1, 10_000):
        c = store.get_contact(cid)
        if c is None:
            break
        if c.phone == phone:
            return c
    raise AssertionError(f"{phone} not stored")


# -- opening ------------------------------------------------------------------------------------------


def test_new_store_is_wal_and_records_its_campaign(store: CampaignStore, db: Path) -> None:
    meta = store.meta()
    assert meta["schema_version"] == "3"
    assert meta["campaign"] == "spring"
    assert meta["dialplan"] == "dialplans/spring.yaml"
    with sqlite3.connect(db) as raw:  # WAL is a property of the file: any other connection sees it
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_wrong_campaign_name_is_refused(store: CampaignStore, db: Path) -> None:
    store.close()
    with pytest.raises(StoreError, match="belongs to campaign 'spring'") as err:
        CampaignStore.open(db, "autumn")
    assert err.value.code == "store-error"
    CampaignStore.open(db, "spring").close()  # the right name opens
    CampaignStore.open(db).close()  # no name given (e.g. export): opens whatever it is


def test_garbage_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "notes.sqlite"
    junk.write_bytes(b"this is not a database, just some text that is long enough to have a header" * 20)
    with pytest.raises(StoreError) as err:
        CampaignStore.open(junk, "spring")
    assert str(junk) in str(err.value)
    assert junk.read_bytes().startswith(b"this is not a database")  # left untouched


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(StoreError, match="not a voicebot campaign store") as err:
        CampaignStore.open(other)
    assert str(other) in str(err.value)


def test_closed_store_refuses_use(store: CampaignStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.summary()


def test_state_and_meta_are_separate(store: CampaignStore, db: Path) -> None:
    assert store.get_state("state") is None
    store.set_state("state", "paused")
    store.set_state("schema_version", "99")  # a state key can never clobber the store's own
    store.close()
    reopened = CampaignStore.open(db, "spring")
    assert reopened.get_state("state") == "paused"
    assert reopened.meta()["schema_version"] == "3"
    reopened.close()


# -- contacts ----------------------------------------------------------------------------------------------


def test_reimport_adds_nothing_and_keeps_state(store: CampaignStore) -> None:
    assert store.add_contacts(contacts(3)) == (3, 0)
    first = store.due(T0, 10)[0]
    attempt = store.start_attempt(first.id, T0)
    store.finish_attempt(attempt.id, AttemptResult(outcome="busy"), T0 + 5, retry_at=T0 + 600)

    changed = [FakeContact(c.phone, {"first_name": "Renamed"}, ("vip",), 7, "Europe/Berlin", c.row) for c in contacts(3)]
    assert store.add_contacts(changed) == (0, 3)

    again = store.get_contact(first.id)
    assert again is not None
    assert (again.status, again.attempts, again.next_at, again.last_outcome) == ("pending", 1, T0 + 600, "busy")
    assert again.fields == {"first_name": "Renamed"}  # data follows the file...
    assert (again.tags, again.priority, again.timezone) == (("vip",), 7, "Europe/Berlin")
    assert store.summary()["contacts"] == 3  # ...the number of contacts does not
    assert store.summary()["attempts"] == 1


def test_due_order_priority_then_waiting_time_then_import_order(store: CampaignStore) -> None:
    store.add_contacts(
        [
            FakeContact("+15550000001", priority=0),
            FakeContact("+15550000002", priority=5),
            FakeContact("+15550000003", priority=0),
            FakeContact("+15550000004", priority=0),
        ]
    )
    store.defer(by_phone(store, "+15550000001").id, T0 - 10)
    store.defer(by_phone(store, "+15550000004").id, T0 - 20)
    assert [c.phone for c in store.due(T0, 10)] == ["+15550000002", "+15550000003", "+15550000004", "+15550000001"]
    assert [c.phone for c in store.due(T0, 2)] == ["+15550000002", "+15550000003"]


def test_defer_moves_a_contact_out_of_due(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    cid = store.due(T0, 1)[0].id
    assert store.defer(cid, T0 + 3600)
    assert store.due(T0, 10) == []
    assert store.next_due_at() == T0 + 3600
    assert [c.id for c in store.due(T0 + 3600, 10)] == [cid]


# -- DNC -------------------------------------------------------------------------------------------------------


def test_dnc_blocks_due_and_dialling(store: CampaignStore) -> None:
    store.add_contacts(contacts(3))
    blocked = contacts(3)[1].phone
    assert store.add_dnc([blocked, " "], source="dnc.csv") == 1
    assert store.add_dnc([blocked], source="dnc.csv") == 0  # already listed
    assert store.is_dnc(blocked)
    assert not store.is_dnc(contacts(3)[0].phone)
    assert blocked not in [c.phone for c in store.due(T0, 10)]
    contact = by_phone(store, blocked)
    assert contact.status == "dnc"
    with pytest.raises(StoreError, match="dnc"):
        store.start_attempt(contact.id, T0)
    assert store.summary()["dnc"] == 1


def test_contact_imported_after_its_number_is_on_dnc(store: CampaignStore) -> None:
    store.add_dnc(["+15550009999"], source="dnc.csv")
    assert store.add_contacts([FakeContact("+15550009999")]) == (1, 0)
    assert store.due(T0, 10) == []
    assert store.next_due_at() is None
    assert by_phone(store, "+15550009999").status == "dnc"


def test_dnc_added_during_a_call_applies_when_it_ends(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    attempt = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.add_dnc([attempt.phone], source="complaint")
    store.finish_attempt(attempt.id, AttemptResult(outcome="busy"), T0 + 5, retry_at=T0 + 600)
    assert store.get_contact(attempt.contact_id).status == "dnc"
    assert store.due(T0 + 1000, 10) == []


def test_finish_with_dnc_lists_the_number(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    attempt = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.finish_attempt(attempt.id, AttemptResult(outcome="dnc"), T0 + 30, retry_at=T0 + 600, dnc=True)
    assert store.is_dnc(attempt.phone)
    contact = store.get_contact(attempt.contact_id)
    assert (contact.status, contact.last_outcome) == ("dnc", "dnc")
    assert store.due(T0 + 1000, 10) == []


# -- the attempt life cycle ----------------------------------------------------------------------------------


def test_start_attempt_refuses_a_contact_already_in_call(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    cid = store.due(T0, 1)[0].id
    attempt = store.start_attempt(cid, T0)
    assert (attempt.id, attempt.seq, attempt.phone, attempt.fields) == (f"c{cid}-a1", 1, contacts(1)[0].phone, {"first_name": "N0"})
    assert store.due(T0, 10) == []  # in_call is not due
    with pytest.raises(StoreError, match="in_call"):
        store.start_attempt(cid, T0)
    with pytest.raises(StoreError, match="no contact 999"):
        store.start_attempt(999, T0)
    assert [a.id for a in store.attempts_for(cid)] == [f"c{cid}-a1"]
    assert store.get_contact(cid).attempts == 1


def test_retry_is_due_again_only_after_retry_at(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    cid = store.due(T0, 1)[0].id
    attempt = store.start_attempt(cid, T0)
    assert store.mark_dialling(attempt.id, worker_id=3, now=T0 + 0.1)
    assert not store.mark_dialling(attempt.id, worker_id=4, now=T0 + 0.2)  # already recorded: nothing changes
    store.finish_attempt(attempt.id, AttemptResult(outcome="busy", sip_code=486), T0 + 2, retry_at=T0 + 600)

    assert store.due(T0 + 599.9, 10) == []
    assert store.next_due_at() == T0 + 600
    assert [c.id for c in store.due(T0 + 600, 10)] == [cid]
    second = store.start_attempt(cid, T0 + 600)
    assert (second.id, second.seq) == (f"c{cid}-a2", 2)
    row = store.attempts_for(cid)[0]
    assert (row.state, row.outcome, row.worker_id, row.dialled_at, row.ended_at) == ("ended", "busy", 3, T0 + 0.1, T0 + 2)


def test_final_outcome_makes_the_contact_done(store: CampaignStore) -> None:
    store.add_contacts(contacts(2))
    for contact in store.due(T0, 10):
        attempt = store.start_attempt(contact.id, T0)
        store.finish_attempt(attempt.id, AttemptResult(outcome="interested"), T0 + 60, retry_at=None)
    assert store.due(T0 + 10**6, 10) == []
    assert store.next_due_at() is None
    summary = store.summary()
    assert summary == {
        "contacts": 2,
        "pending": 0,
        "in_call": 0,
        "done": 2,
        "dnc": 0,
        "attempts": 2,
        "outcomes": {"interested": 2},
    }


def test_finishing_twice_changes_nothing(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    attempt = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.finish_attempt(attempt.id, AttemptResult(outcome="interested", talk_ms=4000), T0 + 60, retry_at=None)
    before = (list(store.export_rows()), store.get_contact(attempt.contact_id), store.summary(), store.events_for("mqtt"))

    store.finish_attempt(attempt.id, AttemptResult(outcome="busy", talk_ms=1), T0 + 90, retry_at=T0 + 100, dnc=True)

    after = (list(store.export_rows()), store.get_contact(attempt.contact_id), store.summary(), store.events_for("mqtt"))
    assert after == before
    assert not store.is_dnc(attempt.phone)
    with pytest.raises(StoreError, match="must not be dialled"):
        store.mark_dialling(attempt.id, 1, T0 + 91)  # an ended attempt is never dialled again


def test_ended_event_is_in_the_outbox(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    attempt = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.add_event("call.ringing", attempt.id, {"sip_code": 180, "after_ms": 900}, T0 + 1)
    store.finish_attempt(attempt.id, AttemptResult(outcome="busy", sip_code=486), T0 + 2, retry_at=T0 + 600)
    events = store.events_for("mqtt")
    assert [(e.kind, e.attempt_id) for e in events] == [("call.ringing", attempt.id), ("attempt.ended", attempt.id)]
    ended = events[1].payload
    assert (ended["outcome"], ended["sip_code"], ended["retry_at"], ended["contact_status"]) == ("busy", 486, T0 + 600, "pending")
    store.delivered("mqtt", events[0].id)
    assert [e.kind for e in store.events_for("mqtt")] == ["attempt.ended"]


# -- crash recovery ----------------------------------------------------------------------------------------------


def test_recover_after_a_crash_interrupts_and_retries_under_a_new_id(db: Path) -> None:
    store = CampaignStore.open(db, "spring")
    store.add_contacts(contacts(2))
    cid = store.due(T0, 1)[0].id
    attempt = store.start_attempt(cid, T0)
    store.mark_dialling(attempt.id, 1, T0)
    store.close()  # the process "dies" mid-call: never finished

    store = CampaignStore.open(db, "spring")
    assert store.get_contact(cid).status == "in_call"  # the committed state survived
    assert store.recover(T0 + 50) == [attempt.id]
    assert store.recover(T0 + 51) == []  # nothing left to recover
    row = store.attempts_for(cid)[0]
    assert (row.state, row.outcome) == ("interrupted", "interrupted")
    contact = store.get_contact(cid)
    assert (contact.status, contact.next_at, contact.attempts, contact.last_outcome) == ("pending", T0 + 50, 1, "interrupted")
    with pytest.raises(StoreError, match="interrupted"):
        store.mark_dialling(attempt.id, 1, T0 + 51)  # the old id must never be dialled

    retry = store.start_attempt(cid, T0 + 60)
    assert (retry.id, retry.seq) == (f"c{cid}-a2", 2)
    assert retry.id != attempt.id
    store.close()


def test_recover_counts_the_interrupted_attempt_against_max_attempts(store: CampaignStore) -> None:
    store.add_contacts(contacts(2))
    first, second = store.due(T0, 2)
    a = store.start_attempt(first.id, T0)
    store.finish_attempt(a.id, AttemptResult(outcome="busy"), T0 + 1, retry_at=T0 + 2)
    store.start_attempt(first.id, T0 + 2)  # attempt 2 of 2: interrupted
    store.start_attempt(second.id, T0 + 2)  # attempt 1 of 2: interrupted
    store.recover(T0 + 10, max_attempts=2)
    assert store.get_contact(first.id).status == "done"
    assert store.get_contact(second.id).status == "pending"


def test_late_result_of_an_interrupted_attempt_is_kept(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    attempt = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.recover(T0 + 5)
    store.finish_attempt(attempt.id, AttemptResult(outcome="interested", talk_ms=9000), T0 + 60, retry_at=None)
    row = store.attempts_for(attempt.contact_id)[0]
    assert (row.state, row.outcome) == ("ended", "interested")
    assert store.get_contact(attempt.contact_id).status == "done"  # it was waiting for its retry: no call needed


def test_late_result_does_not_override_a_newer_attempt_in_flight(store: CampaignStore) -> None:
    store.add_contacts(contacts(1))
    old = store.start_attempt(store.due(T0, 1)[0].id, T0)
    store.recover(T0 + 5)
    new = store.start_attempt(old.contact_id, T0 + 6)
    store.finish_attempt(old.id, AttemptResult(outcome="busy"), T0 + 7, retry_at=None)
    assert store.get_contact(old.contact_id).status == "in_call"
    store.finish_attempt(new.id, AttemptResult(outcome="no_answer"), T0 + 40, retry_at=T0 + 100)
    assert store.get_contact(old.contact_id).status == "pending"


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from voicebot.campaign.store import AttemptResult, CampaignStore

    store = CampaignStore.open(sys.argv[1], "crash")
    store.recover(time.time())
    print("ready", flush=True)
    for _ in range(100_000):  # a bound, so a forgotten child ends by itself
        now = time.time()
        for contact in store.due(now, 10):
            attempt = store.start_attempt(contact.id, now)
            # one write() per line, so a kill never leaves half a line in the pipe
            os.write(1, f"started {attempt.id}\\n".encode())  # "acting on" it: it must be in the file by now
            store.mark_dialling(attempt.id, 1, now)
            store.add_event("call.dialled", attempt.id, {"uri": "sip:x@127.0.0.1", "worker_id": 1}, now)
            result = AttemptResult(outcome="busy", sip_code=486, path=["greet", "pitch"], slots={"n": attempt.seq})
            store.finish_attempt(attempt.id, result, now, retry_at=now)
            os.write(1, f"ended {attempt.id}\\n".encode())
    """
)


def _note_child_line(line: str, started: set[str], ended: set[str]) -> None:
    assert line.endswith("\n"), f"a torn line from the child: {line!r}"
    kind, _, attempt_id = line.strip().partition(" ")
    if kind != "ready":
        assert attempt_id, f"a line without an attempt id: {line!r}"
        {"started": started, "ended": ended}[kind].add(attempt_id)


def _run_child_until_killed(script: Path, db: Path, ended_before_kill: int) -> tuple[set[str], set[str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    started: set[str] = set()
    ended: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while len(ended) < ended_before_kill:
            line = proc.stdout.readline()
            assert line, f"the child exited early ({proc.wait()}): {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the child is too slow"
            _note_child_line(line, started, ended)
        time.sleep(random.uniform(0, 0.01))  # land the kill at an arbitrary point of the loop
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # only the child this test started, by its pid
        proc.wait(timeout=10)
    for line in proc.stdout.read().splitlines(keepends=True):  # what it printed before dying
        _note_child_line(line, started, ended)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return started, ended


def test_sigkill_mid_run_loses_nothing_and_never_reuses_an_attempt_id(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    with CampaignStore.open(db, "crash") as store:
        store.add_contacts(contacts(4))

    all_started: set[str] = set()
    rounds = 12  # each kill lands somewhere random; enough of them hit every step of the loop
    for round_no in range(rounds):
        started, ended = _run_child_until_killed(script, db, ended_before_kill=5 + round_no)
        assert not (started & all_started), "an attempt id was handed out twice"
        all_started |= started

        with sqlite3.connect(db) as raw:  # the file itself survived the kill
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store = CampaignStore.open(db, "crash")
        try:
            rows = {}
            for contact in [store.get_contact(cid) for cid in range(1, 5)]:
                attempts = store.attempts_for(contact.id)
                # contacts.attempts is exactly the number of attempt rows, numbered 1..n with no gap
                assert contact.attempts == len(attempts)
                assert [a.seq for a in attempts] == list(range(1, len(attempts) + 1))
                assert [a.id for a in attempts] == [f"c{contact.id}-a{a.seq}" for a in attempts]
                open_ = [a for a in attempts if a.state in ("created", "dialling")]
                assert len(open_) <= 1
                assert contact.status == ("in_call" if open_ else "pending")
                rows.update({a.id: a for a in attempts})
            # every attempt the child acted on is in the file; every result it reported is kept
            assert started <= set(rows)
            assert all(rows[i].state == "ended" and rows[i].outcome == "busy" for i in ended)
            assert {r.state for r in rows.values()} <= {"created", "dialling", "ended", "interrupted"}
            recoverable = {i for i, r in rows.items() if r.state in ("created", "dialling")}
            exported = {r["attempt_id"]: r for r in store.export_rows()}
            assert set(exported) == set(rows)
            assert all(exported[i]["path"] == "greet > pitch" for i, r in rows.items() if r.state == "ended")
            ended_events = [e.attempt_id for e in store.events_for("mqtt", 10_000) if e.kind == "attempt.ended"]
            assert sorted(ended_events) == sorted(i for i, r in rows.items() if r.state == "ended")
            assert store.summary()["attempts"] == len(rows)
            # what the next run's recover() would do
            assert set(store.recover(time.time())) == recoverable
            assert store.summary()["in_call"] == 0
        finally:
            store.close()
    assert len(all_started) >= sum(5 + r for r in range(rounds))


# -- threads ---------------------------------------------------------------------------------------------------------


def test_two_threads_share_one_store(store: CampaignStore) -> None:
    store.add_contacts(contacts(40))
    ids = [c.id for c in store.due(T0, 100)]
    errors: list[BaseException] = []

    def work(mine: list[int]) -> None:
        try:
            for cid in mine:
                attempt = store.start_attempt(cid, T0)
                store.mark_dialling(attempt.id, 1, T0)
                store.add_event("call.dialled", attempt.id, {"uri": "sip:x@127.0.0.1"}, T0)
                store.finish_attempt(attempt.id, AttemptResult(outcome="interested"), T0 + 1, retry_at=None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.summary()["done"] == 40
    assert len(store.events_for("mqtt", 1000)) == 80


# -- export ----------------------------------------------------------------------------------------------------------


def test_export_rows(store: CampaignStore) -> None:
    store.add_contacts([FakeContact("+15550000001", {"first_name": "Ana"}, ("vip",)), FakeContact("+15550000002")])
    a1 = store.start_attempt(1, T0)
    store.mark_dialling(a1.id, 2, T0 + 1)
    store.finish_attempt(a1.id, AttemptResult(outcome="no_answer", sip_code=480), T0 + 31, retry_at=T0 + 3600)
    a2 = store.start_attempt(1, T0 + 3600)
    store.mark_dialling(a2.id, 1, T0 + 3600)
    result = AttemptResult(
        outcome="interested",
        session_outcome="interested",
        sip_code=200,
        setup_ms=2100,
        talk_ms=45_000,
        hangup_by="bot",
        path=["greet", "pitch", "close"],
        slots={"callback_time": "10:00"},
        transcript=[{"who": "customer", "text": "yes please"}],
        recording="/calls/c1-a2.wav",
        record={"attempt_id": a2.id, "anything": [1, 2]},
    )
    store.finish_attempt(a2.id, result, T0 + 3700, retry_at=None)
    store.start_attempt(2, T0 + 3700)  # in flight: exported with empty result columns

    rows = list(store.export_rows(batch=2))  # pages smaller than the data: the paging is exercised
    assert [r["attempt_id"] for r in rows] == ["c1-a1", "c1-a2", "c2-a1"]
    assert len({tuple(r) for r in rows}) == 1  # every row has the same columns (one CSV header)
    first, second, third = rows
    assert (first["outcome"], first["sip_code"], first["state"], first["seq"]) == ("no_answer", 480, "ended", 1)
    assert second["phone"] == "+15550000001"
    assert json.loads(second["fields"]) == {"first_name": "Ana"}
    assert json.loads(second["tags"]) == ["vip"]
    assert (second["outcome"], second["session_outcome"], second["talk_ms"]) == ("interested", "interested", 45_000)
    assert second["path"] == "greet > pitch > close"
    assert json.loads(second["slots"]) == {"callback_time": "10:00"}
    assert second["recording"] == "/calls/c1-a2.wav"
    assert second["created_at"] == "2026-05-28T21:26:40.000+00:00"
    assert second["dialled_at"] == "2026-05-28T21:26:40.000+00:00"
    assert second["ended_at"] == "2026-05-28T21:28:20.000+00:00"
    assert (third["state"], third["outcome"], third["ended_at"], third["sip_code"]) == ("created", "", "", "")


# -- the read-only mode readers use (the report, the export) ---------------------------------------------


def test_a_readonly_store_reads_while_a_run_writes_and_refuses_every_write(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    writer = CampaignStore.open(db, "demo", "demo.yaml")
    writer.add_contacts(contacts(3))
    attempt = writer.start_attempt(1, T0)
    writer.mark_dialling(attempt.id, 1, T0)
    reader = CampaignStore.open_readonly(db)
    try:
        assert [c.phone for c in reader.contact_rows()] == ["+15550000000", "+15550000001", "+15550000002"]
        (row,) = reader.call_rows()
        assert (row.attempt_id, row.state, row.recorded, row.worker_id) == ("c1-a1", "dialling", False, 1)
        writer.finish_attempt(attempt.id, AttemptResult(outcome="busy", sip_code=486), T0 + 5, retry_at=None)
        (row,) = reader.call_rows()  # the run's commit is visible to the open reader
        assert (row.outcome, row.sip_code, row.recorded) == ("busy", 486, True)
        for write in (
            lambda: reader.add_contacts(contacts(1)),
            lambda: reader.start_attempt(2, T0),
            lambda: reader.add_event("call.dialled", None, {}, T0),
            lambda: reader.set_state("state", "running"),
        ):
            with pytest.raises(StoreError, match=f"{db}: opened read-only") as refused:
                write()
            assert refused.value.code == "store-readonly"
    finally:
        reader.close()
        writer.close()


def test_opening_readonly_never_creates_or_changes_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    with pytest.raises(StoreError, match="no such campaign store") as err:
        CampaignStore.open_readonly(missing)
    assert err.value.code == "store-missing" and not missing.exists()

    other = tmp_path / "other.db"
    sqlite3.connect(other).executescript("CREATE TABLE meta (key TEXT, value TEXT); CREATE TABLE contacts (id INTEGER)")
    snapshot = other.read_bytes()
    with pytest.raises(StoreError, match=r"other.db is not a voicebot campaign store \(no table attempts, call_records\)"):
        CampaignStore.open_readonly(other)
    assert other.read_bytes() == snapshot and not Path(f"{other}-wal").exists()

    text = tmp_path / "notes.db"
    text.write_text("not a database at all, but long enough to have a header of sorts" * 10)
    with pytest.raises(StoreError, match="notes.db is not a voicebot campaign store"):
        CampaignStore.open_readonly(text)


def test_the_report_and_the_export_read_the_same_rows(tmp_path: Path) -> None:
    from voicebot.report.source import load_campaign

    db = tmp_path / "c.db"
    with CampaignStore.open(db, "demo", "demo.yaml") as store:
        store.add_contacts(contacts(3))
        for contact_id, outcome in ((2, "no_answer"), (1, "interested"), (3, None)):
            attempt = store.start_attempt(contact_id, T0 + contact_id)
            store.mark_dialling(attempt.id, 1, T0 + 10 - contact_id)
            if outcome:
                store.finish_attempt(attempt.id, AttemptResult(outcome=outcome, path=["greet"]), T0 + 20, retry_at=None)
    with CampaignStore.open_readonly(db) as reader:
        exported = list(reader.export_rows(batch=2))
    report = load_campaign(db)
    assert [r["attempt_id"] for r in exported] == ["c1-a1", "c2-a1", "c3-a1"]  # export: contact order
    assert [c.attempt_id for c in report.calls] == ["c3-a1", "c2-a1", "c1-a1"]  # report: the order calls started
    by_id = {c.attempt_id: c for c in report.calls}
    for row in exported:
        call = by_id[row["attempt_id"]]
        assert (row["outcome"] or None, row["path"], row["phone"]) == (call.outcome, " > ".join(call.path), call.phone)
    assert report.campaign == "demo" and report.dialplan == "demo.yaml" and len(report.contacts) == 3


# -- typed events, sink cursors, dead letters -------------------------------------------------------------


def test_an_event_that_does_not_fit_its_model_is_refused_where_it_is_written(store: CampaignStore) -> None:
    from voicebot.events import CallRinging, EventRefused

    with pytest.raises(EventRefused, match=r"event 'call.ringing': field 'after_ms': Input should be a valid integer.*'soon'") as bad:
        store.add_event("call.ringing", "c1-a1", {"sip_code": 180, "after_ms": "soon"}, T0)
    assert (bad.value.kind, bad.value.field, bad.value.code) == ("call.ringing", "after_ms", "event-refused")
    with pytest.raises(EventRefused, match="event kind 'call.teleported' is not one of the campaign's events") as unknown:
        store.add_event("call.teleported", None, {}, T0)
    assert unknown.value.kind == "call.teleported"
    assert store.events_for("mqtt") == []  # nothing was written
    store.add_event("call.ringing", "c1-a1", CallRinging(sip_code=183, after_ms=40), T0)  # the model itself
    with pytest.raises(EventRefused, match="event 'call.dialled' takes a CallDialled, not a CallRinging"):
        store.add_event("call.dialled", "c1-a1", CallRinging(sip_code=183, after_ms=40), T0)
    assert [(e.kind, e.payload) for e in store.events_for("mqtt")] == [("call.ringing", {"sip_code": 183, "after_ms": 40})]


def test_each_sink_reads_with_its_own_cursor_and_a_dead_letter_moves_only_its_own(store: CampaignStore) -> None:
    for i in range(4):
        store.add_event("call.node_entered", "c1-a1", {"node": f"n{i}"}, T0 + i)
    ids = [e.id for e in store.events_for("mqtt")]
    store.delivered("mqtt", ids[1])
    store.dead_letter("mqtt", store.events_for("mqtt")[0], "the broker refused it", T0 + 10)
    assert [e.id for e in store.events_for("mqtt")] == ids[3:] and store.sink_backlog("mqtt") == 1
    assert [e.id for e in store.events_for("webhook")] == ids and store.sink_backlog("webhook") == 4
    store.delivered("mqtt", ids[0])  # a cursor never goes back
    assert store.sink_backlog("mqtt") == 1
    (dead,) = store.dead_letters()
    assert (dead.sink, dead.event_id, dead.kind, dead.reason) == ("mqtt", ids[2], "call.node_entered", "the broker refused it")


def test_a_version_1_store_keeps_what_it_had_published(db: Path) -> None:
    with CampaignStore.open(db, "spring") as store:
        for i in range(5):
            store.add_event("call.node_entered", None, {"node": f"n{i}"}, T0 + i)
    with sqlite3.connect(db) as raw:  # back to version 1: the published flag was the only cursor
        raw.executescript(
            "DROP TABLE sink_cursors; DROP TABLE dead_letters; UPDATE meta SET value = '1' WHERE key = 'schema_version';"
            " DROP INDEX contacts_next; DROP INDEX contacts_next_at; ALTER TABLE contacts DROP COLUMN extension;"
            " CREATE INDEX contacts_due ON contacts (status, priority, next_at);"
            " UPDATE events SET published = 1 WHERE id <= 3;"
        )
    with CampaignStore.open(db, "spring") as store:
        assert store.meta()["schema_version"] == "3"
        assert [e.id for e in store.events_for("mqtt")] == [4, 5]
        assert store.dead_letters() == []
