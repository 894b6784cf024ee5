"""The CallPlacer seam: one slot ledger for the local pool and the remote dispatcher, and a remote
manager that runs with pjsua2 made unimportable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import query

from voicebot.calls import outcomes
from voicebot.calls.messages import Answered, DialFailed, Ended, Ringing
from voicebot.calls.placer import CallPlacer, LedgerPlacer, NoCapacity, SlotLedger
from voicebot.errors import SipError

DATA = Path(__file__).parent / "data" / "campaign"


def _ledger(capacities: dict[str, int], concurrency: int = 100) -> SlotLedger[str]:
    ledger: SlotLedger[str] = SlotLedger(concurrency)
    for serial, (name, capacity) in enumerate(capacities.items(), start=1):
        ledger.worker(name, serial)
        ledger.up(name, capacity, pid=1000 + serial)
    return ledger


def _drain(ledger: SlotLedger[str]) -> list:
    events = []
    while not ledger.events.empty():
        events.append(ledger.events.get_nowait())
    return events


def _ended(attempt_id: str) -> Ended:
    return Ended(attempt_id, "answered", 200, "", 100, 2000, "customer_hangup", "remote", 10, 10, 0)


def test_calls_go_to_the_emptiest_live_worker_and_never_above_its_capacity_or_the_concurrency() -> None:
    ledger = _ledger({"a": 2, "b": 3}, concurrency=4)
    placed = [ledger.place(f"c{i}", closed=False).key for i in range(4)]
    assert placed == ["b", "a", "b", "a"]  # first of the emptiest each time
    assert ledger.free == 0 and ledger.capacity == 5
    with pytest.raises(NoCapacity, match="no free call slot for attempt c4: 4 calls in flight, concurrency 4, 2 of 2 workers live"):
        ledger.place("c4", closed=False)
    ledger.concurrency = 10
    assert ledger.place("c4", closed=False).key == "b" and ledger.free == 0  # b full at 3, a full at 2


def test_an_attempt_is_never_placed_twice_and_nothing_is_placed_once_closed() -> None:
    ledger = _ledger({"a": 4})
    ledger.place("c1", closed=False)
    ledger.observe("a", _ended("c1"))
    with pytest.raises(SipError, match="attempt c1 was already dialled") as twice:
        ledger.place("c1", closed=False)
    assert twice.value.code == "duplicate-attempt"
    with pytest.raises(SipError, match="closed") as closed:
        ledger.place("c2", closed=True)
    assert closed.value.code == "sip-pool-closed"


def test_an_ended_call_frees_its_slot_before_its_event_is_read() -> None:
    ledger = _ledger({"a": 1})
    ledger.place("c1", closed=False)
    assert ledger.free == 0
    ledger.observe("a", Ringing("c1", 180, 30))
    ledger.observe("a", _ended("c1"))
    assert ledger.free == 1 and ledger.in_flight == []
    assert [(e.worker_id, e.pid, type(e.event)) for e in _drain(ledger)] == [(1, 1001, Ringing), (1, 1001, Ended)]


def test_a_lost_worker_ends_each_of_its_calls_as_worker_lost_and_only_its_own() -> None:
    ledger = _ledger({"a": 4, "b": 4})
    for attempt_id in ("c1", "c2", "c3", "c4"):
        ledger.place(attempt_id, closed=False)
    on_a = sorted(ledger.workers["a"].calls)
    queued, answered = on_a
    ledger.track(queued).sent_at = None  # still in the placer's queue: never dialled
    ledger.observe("a", Answered(answered, 250))
    _drain(ledger)
    ledger.lose("a", "worker process died (exit code -9)", never_sent=frozenset({queued}))

    events = {e.event.attempt_id: e.event for e in _drain(ledger)}
    assert set(events) == set(on_a)
    assert isinstance(events[queued], DialFailed) and events[queued].code == "pool-worker-lost"
    lost = events[answered]
    assert isinstance(lost, Ended) and lost.outcome == outcomes.WORKER_LOST and lost.setup_ms == 250
    assert "exit code -9" in lost.reason
    assert not ledger.workers["a"].live and ledger.capacity == 4 and sorted(ledger.in_flight) == sorted(ledger.workers["b"].calls)


def test_a_late_word_on_a_call_given_up_is_dropped_when_asked() -> None:
    ledger = _ledger({"a": 4})
    ledger.place("c1", closed=False)
    ledger.lose("a", "no heartbeat")
    _drain(ledger)
    ledger.observe("a", _ended("c1"), drop_strays=True)
    assert _drain(ledger) == []


def test_the_pool_and_the_dispatcher_are_one_kind_of_placer() -> None:
    from voicebot.bus.dispatch import RemoteWorkers
    from voicebot.telephony.pool import WorkerPool

    # mypy checks the full signatures where the runner takes each as a CallPlacer; here: the shared ledger
    members = [name for name in dir(CallPlacer) if not name.startswith("_")] + ["__enter__", "__exit__"]
    assert {"dial", "hangup", "next_event", "capacity", "free_slots", "workers", "close"} <= set(members)
    for cls in (WorkerPool, RemoteWorkers):
        assert issubclass(cls, LedgerPlacer), cls
        assert all(hasattr(cls, name) for name in members), [name for name in members if not hasattr(cls, name)]


# -- a remote manager on a host without pjsua2 ----------------------------------------------------------

# A worker that speaks the wire protocol of `voicebot worker` (heartbeats, jobs in, events out) and answers
# every call at once: the manager under test cannot tell it from a real one, and this process needs no SIP.
_FAKE_WORKER = """
import sys, threading, time
import paho.mqtt.client as mqtt
from voicebot.bus.jobs import WorkerStatus, decode_job, encode_event, worker_topic
from voicebot.calls.messages import Answered, Dial, Ended

port, campaign, digest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
name, calls, lock = "fake-1", set(), threading.Lock()
topic = lambda leaf: worker_topic(campaign, name, leaf)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)

def on_message(c, u, m):
    job, _ = decode_job(m.topic, m.payload)
    if isinstance(job, Dial):
        c.publish(topic("events"), encode_event(Answered(job.attempt_id, 120)), qos=1)
        record = {"path": ["greeting"], "transcript": []}
        ended = Ended(job.attempt_id, "answered", 200, "", 120, 1500, "customer_hangup", "remote", 75, 75, 0, record=record)
        c.publish(topic("events"), encode_event(ended), qos=1)

client.on_message = on_message
client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic("jobs"), qos=1)
client.connect("127.0.0.1", port)
client.loop_start()
while True:
    status = WorkerStatus(worker=name, state="up", incarnation="i1", capacity=4, dialplan_sha256=digest, ts=time.time())
    client.publish(topic("status"), status.model_dump_json(), qos=0)
    time.sleep(0.5)
"""

# Run in the manager's process before anything else: `import pjsua2` raises ImportError from here on.
_NO_PJSUA2 = "import sys\nsys.modules['pjsua2'] = None\n"


def test_a_remote_manager_runs_a_campaign_with_pjsua2_unimportable(tmp_path: Path) -> None:
    from voicebot.bus.broker import EmbeddedBroker
    from voicebot.bus.jobs import dialplan_digest

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_NO_PJSUA2)
    # the shim first; whatever path this test runs with after it (the manager and the fake worker run one tree)
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    blocked = subprocess.run([sys.executable, "-c", "import voicebot.telephony.pool"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "pjsua2" in blocked.stderr, "the shim must make pjsua2 unimportable"

    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text())
    broker = EmbeddedBroker(tmp_path / "broker").start()
    worker = subprocess.Popen([sys.executable, "-c", _FAKE_WORKER, str(broker.port), "runner-test", dialplan_digest(dialplan)], env=env)
    db = tmp_path / "campaign.db"
    try:
        manager = subprocess.run(
            [sys.executable, "-m", "voicebot.cli", "run", str(dialplan), "--contacts", str(DATA / "contacts.csv"), "--db", str(db),
             "--broker", f"mqtt://127.0.0.1:{broker.port}", "--workers", "remote", "--until-idle"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        worker.terminate()  # only the process this test started
        worker.wait(10)
        broker.stop()
    assert manager.returncode == 0, manager.stdout[-2000:] + manager.stderr[-3000:]
    outcomes_ = query(db, "SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome")
    contacts = len((DATA / "contacts.csv").read_text().strip().splitlines()) - 1
    assert outcomes_ == [("customer_hangup", contacts)], outcomes_
    # the record came back on the worker's Ended and is in the store
    assert query(db, "SELECT COUNT(*) FROM call_records WHERE path = '[\"greeting\"]'") == [(contacts,)]


def test_the_manager_imports_no_pjsua2_whichever_entry_point() -> None:
    code = textwrap.dedent("""
        import sys
        import voicebot.cli, voicebot.apps.campaign_cli, voicebot.campaign.runner, voicebot.bus.dispatch
        loaded = sorted(m for m in sys.modules if m == "pjsua2" or m.startswith("voicebot.telephony"))
        print(",".join(loaded))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"loaded on the manager's import path: {out.stdout}"


def test_a_local_run_is_given_its_media_workers_by_the_entry_point(tmp_path: Path) -> None:
    from voicebot.campaign.runner import CampaignRun, RunOptions
    from voicebot.errors import ConfigError

    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text())
    run = CampaignRun(RunOptions(dialplan=dialplan, db=tmp_path / "c.db", contacts=DATA / "contacts.csv", broker=None))
    run.prepare()
    try:
        with pytest.raises(ConfigError, match="needs a pool_factory"):
            run.run()
    finally:
        run.close()
