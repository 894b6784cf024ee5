"""Calls over the broker: `voicebot run --workers remote` and `voicebot worker`s, joined only by a real mosquitto.

The sipp UAS answers every call and hangs up after a few seconds (the script's
outcome is customer_hangup); its trace shows which attempts reached the far end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import group_alive, invites_by_attempt, query

from voicebot.bus.broker import BrokerError, BrokerSettings, EmbeddedBroker
from voicebot.bus.jobs import (
    JobMessageError,
    WorkerStatus,
    decode_event,
    decode_job,
    decode_status,
    encode_event,
    encode_job,
    worker_of,
    worker_topic,
)
from voicebot.calls.messages import Dial, Ended, Hangup, Ringing

DATA = Path(__file__).parent / "data" / "campaign"
CONTACTS = 24


# -- the messages ------------------------------------------------------------------------------------


def test_jobs_and_events_survive_the_wire_exactly() -> None:
    topic = worker_topic("demo/en", "host-1", "jobs")
    assert topic == "voicebot/v1/demo_en/workers/host-1/jobs" and worker_of(topic) == "host-1"
    dial = Dial("c1-a2", "+12125550100", (("first_name", "Anna"), ("company", "Acme")))
    assert decode_job(topic, encode_job(dial, now=123.5)) == (dial, 123.5)
    assert decode_job(topic, encode_job(Hangup("c1-a2"), now=1.0))[0] == Hangup("c1-a2")
    record = {"path": ["greeting", "bye"], "transcript": [{"speaker": "customer", "text": "да, конечно"}]}
    ended = Ended("c1-a2", "answered", 200, "", 120, 3000, "meeting_booked", "remote", 150, 150, 0, handoff="transferred", record=record)
    assert decode_event(topic, encode_event(ended)) == ended  # the call's record travels on its Ended
    assert decode_event(topic, encode_event(Ringing("c1-a2", 180, 40))) == Ringing("c1-a2", 180, 40)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "an object with a 'body'"),
        (b'{"type": "Format", "body": {}, "sent_at": 1}', "unknown message type 'Format'"),
        (b'{"type": "Dial", "body": {"attempt_id": "c1-a1"}, "sent_at": 1}', "missing fields"),
        (b'{"type": "Dial", "body": {"attempt_id": "c1-a1", "number": "1"}}', "without sent_at"),
        (b'{"type": "Dial", "body": {"attempt_id": "", "number": "1"}, "sent_at": 1}', "without an attempt id"),
        (b'{"type": "Dial", "body": {"attempt_id": "a", "number": "1", "contact": 5}, "sent_at": 1}', "contact is not"),
    ],
)
def test_a_garbled_job_is_refused_with_its_topic_named(payload: bytes, message: str) -> None:
    with pytest.raises(JobMessageError, match=message) as e:
        decode_job("voicebot/v1/x/workers/w1/jobs", payload)
    assert "voicebot/v1/x/workers/w1/jobs" in str(e.value)


def test_a_status_that_is_not_one_is_refused() -> None:
    status = WorkerStatus(worker="w1", state="up", capacity=4, calls=["c1-a1"])
    assert decode_status("t", status.model_dump_json().encode()) == status
    with pytest.raises(JobMessageError, match="not a worker status"):
        decode_status("t", b'{"state": "up"}')


def test_tls_options_come_from_the_url_and_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = BrokerSettings.from_url(f"mqtts://dialer@broker:8884?ca={ca}", {"VOICEBOT_MQTT_PASSWORD": "pw"})
    assert (s.tls, s.ca_file, s.port, s.password) == (True, str(ca), 8884, "pw") and "pw" not in str(s)
    with pytest.raises(BrokerError, match="TLS options"):
        BrokerSettings.from_url(f"mqtt://broker?ca={ca}", {})
    with pytest.raises(BrokerError, match="does not exist"):
        BrokerSettings.from_url("mqtts://broker?ca=/nonexistent/ca.pem", {})
    with pytest.raises(BrokerError, match="both cert= and key="):
        BrokerSettings.from_url(f"mqtts://broker?cert={ca}", {})
    with pytest.raises(BrokerError, match="unknown option 'insecure'"):
        BrokerSettings.from_url("mqtts://broker?insecure=1", {})


# -- two hosts' worth of processes on 127.0.0.1 ------------------------------------------------------


def _dialplan(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text((DATA / "campaign.yaml").read_text().replace("127.0.0.1:5999", f"127.0.0.1:{port}"))
    return path


class _Cluster:
    """A mosquitto, `voicebot worker`s and a `voicebot run --workers remote`, each a process started here."""

    def __init__(self, tmp_path: Path, dialplan: Path) -> None:
        self.tmp_path = tmp_path
        self.dialplan = dialplan
        self.broker = EmbeddedBroker(tmp_path / "broker").start()
        self.url = f"mqtt://127.0.0.1:{self.broker.port}"
        self.workers: dict[str, subprocess.Popen] = {}
        self.manager: subprocess.Popen | None = None
        self.db = tmp_path / "campaign.db"
        self.statuses: dict[str, list[tuple[float, WorkerStatus]]] = defaultdict(list)
        self._watch()

    def _watch(self) -> None:
        import paho.mqtt.client as mqtt

        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-watcher")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("voicebot/v1/+/workers/+/status", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()

        def on_message(c, u, m) -> None:  # noqa: ANN001
            status = WorkerStatus.model_validate_json(m.payload)
            self.statuses[status.worker].append((time.monotonic(), status))

        self.client.on_message = on_message
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        assert ready.wait(10), "the test's MQTT watcher could not subscribe"

    def start_worker(self, name: str, calls: int = 4) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "voicebot.cli",
            "worker",
            str(self.dialplan),
            "--broker",
            self.url,
            "--name",
            name,
            "--calls",
            str(calls),
            "--work-dir",
            str(self.tmp_path / name),
            "--grace",
            "20",
        ]
        log = open(self.tmp_path / f"{name}.out", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            cmd, cwd=self.tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.workers[name] = proc
        return proc

    def wait_up(self, name: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(s.state == "up" for _, s in self.statuses[name]):
            proc = self.workers[name]
            assert proc.poll() is None, f"worker {name} exited ({proc.returncode}): {self.output(name)}"
            assert time.monotonic() < deadline, f"worker {name} sent no heartbeat in {timeout_s} s: {self.output(name)}"
            time.sleep(0.1)

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.out").read_text(errors="replace")[-3000:]

    def start_manager(self, *extra: str) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "voicebot.cli",
            "run",
            str(self.dialplan),
            "--contacts",
            str(DATA / "contacts.csv"),
            "--db",
            str(self.db),
            "--broker",
            self.url,
            "--workers",
            "remote",
            "--until-idle",
            *extra,
        ]
        log = open(self.tmp_path / "manager.out", "wb")  # noqa: SIM115
        self.manager = subprocess.Popen(
            cmd, cwd=self.tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self.manager

    def wait_manager(self, timeout_s: float) -> int:
        assert self.manager is not None
        try:
            return self.manager.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not finish in {timeout_s} s: {(self.tmp_path / 'manager.out').read_text()[-3000:]}")

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.manager]:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)  # only processes this test started, by pid
        for proc in [*self.workers.values(), self.manager]:
            if proc is None:
                continue
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the workers' media processes too
                proc.wait(5)
        self.client.loop_stop()
        self.client.disconnect()
        self.broker.stop()


@pytest.fixture
def cluster(sipp, tmp_path: Path):
    trace = tmp_path / "invites.log"
    port = sipp("uas_answer", "-d", "4000", "-m", "500", "-l", "100", "-trace_msg", "-message_file", str(trace))
    c = _Cluster(tmp_path, _dialplan(tmp_path, port))
    c.trace = trace
    yield c
    c.stop()


def _attempts(db: Path) -> list[tuple]:
    return query(db, "SELECT a.id, a.contact_id, a.seq, a.state, a.outcome, a.worker_id FROM attempts a ORDER BY a.contact_id, a.seq")


def test_two_workers_share_one_campaign_through_the_broker_only(cluster: _Cluster) -> None:
    for name in ("host-a", "host-b"):
        cluster.start_worker(name, calls=4)
    for name in ("host-a", "host-b"):
        cluster.wait_up(name)
    cluster.start_manager()
    assert cluster.wait_manager(240) == 0, (cluster.tmp_path / "manager.out").read_text()[-3000:]

    attempts = _attempts(cluster.db)
    assert len({a[1] for a in attempts}) == CONTACTS and len(attempts) == CONTACTS  # one attempt each: nothing lost or doubled
    assert {a[4] for a in attempts} == {"customer_hangup"}
    by_worker = defaultdict(int)
    for a in attempts:
        by_worker[a[5]] += 1
    assert len(by_worker) == 2 and min(by_worker.values()) >= 4, f"calls per worker: {dict(by_worker)}"
    # at most 4 + 4 at once: each worker's heartbeats never listed more than its capacity
    assert all(len(s.calls) <= 4 for name in ("host-a", "host-b") for _, s in cluster.statuses[name])
    # each attempt reached the far end once, from the worker that took it
    invites = invites_by_attempt(cluster.trace)
    assert set(invites) == {a[0] for a in attempts} and all(len(ids) == 1 for ids in invites.values())
    # the records came back over the broker: the manager's store has each call's path and its JSON record file
    paths = query(cluster.db, "SELECT attempt_id, path FROM call_records")
    assert len(paths) == CONTACTS and all(json.loads(p)[0] == "greeting" for _, p in paths)
    calls_dir = cluster.db.with_suffix(".calls")
    assert all((calls_dir / f"{a[0]}.json").is_file() for a in attempts)
    # the script's events came live, during the call (the calls last 4 s), not from the record at its end
    greeted = dict(query(cluster.db, "SELECT attempt_id, MIN(ts) FROM events WHERE kind = 'call.node_entered' GROUP BY attempt_id"))
    ended = dict(query(cluster.db, "SELECT attempt_id, ts FROM events WHERE kind = 'attempt.ended'"))
    assert set(greeted) == set(ended) and all(greeted[a] < ended[a] - 2 for a in ended)
    print(f"\n  {CONTACTS} contacts over the broker: calls per worker {dict(by_worker)}")


def test_a_killed_worker_is_detected_within_seconds_and_its_calls_are_retried(cluster: _Cluster) -> None:
    victim, survivor = cluster.start_worker("host-a", calls=4), cluster.start_worker("host-b", calls=4)
    cluster.wait_up("host-a")
    cluster.wait_up("host-b")
    cluster.start_manager()
    # wait until the victim carries calls, then kill -9 it (its media processes see their pipe close and hang up)
    deadline = time.monotonic() + 120
    while True:
        assert cluster.manager.poll() is None, (cluster.tmp_path / "manager.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "host-a never carried 2 calls"
        beats = cluster.statuses["host-a"]
        if beats and len(beats[-1][1].calls) >= 2:
            carried = set(beats[-1][1].calls)
            break
        time.sleep(0.05)
    time.sleep(0.5)  # let them be answered
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.wait(10)

    # the manager's store: those calls ended as worker_lost; how long did it take to notice?
    deadline = time.monotonic() + 30
    lost: list[tuple] = []
    while time.monotonic() < deadline:
        lost = query(cluster.db, "SELECT id FROM attempts WHERE outcome = 'worker_lost'")
        if {row[0] for row in lost} >= carried:
            break
        time.sleep(0.05)
    detected_s = time.monotonic() - killed_at
    assert {row[0] for row in lost} >= carried, f"calls of the killed worker not recorded as worker_lost: {carried} vs {lost}"
    assert detected_s < 10, f"the killed worker was noticed after {detected_s:.1f} s"
    lost_status = [s for _, s in cluster.statuses["host-a"] if s.state == "lost"]
    assert lost_status, "the broker did not publish the killed worker's last will"

    assert cluster.wait_manager(240) == 0, (cluster.tmp_path / "manager.out").read_text()[-3000:]
    attempts = _attempts(cluster.db)
    final = {}
    for a in attempts:
        final[a[1]] = a
    # every contact finished: the lost ones on a later attempt (worker_lost is retried by the dialplan's policy)
    assert len(final) == CONTACTS and {a[4] for a in final.values()} == {"customer_hangup"}
    retried = [a for a in attempts if a[0] in carried]
    assert all(final[a[1]][2] > a[2] for a in retried)
    invites = invites_by_attempt(cluster.trace)
    assert all(len(ids) == 1 for ids in invites.values()), "an attempt id reached the far end twice"
    time.sleep(1)
    assert not group_alive(victim.pid), "a process of the killed worker lived on"
    assert survivor.poll() is None
    print(f"\n  killed worker noticed and its {len(carried)} calls recorded worker_lost after {detected_s:.2f} s")


def test_a_worker_renders_each_contacts_prompts_while_the_phone_rings(sipp, tmp_path: Path) -> None:
    """The greeting names the contact: a remote worker renders it on the Dial, before any answer."""
    from voicebot.dialplan import load_dialplan
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import make_tts

    port = sipp("uas_ring", "-m", "500", "-l", "100")  # rings, never answers
    dialplan = _dialplan(tmp_path, port)
    text = dialplan.read_text().replace("ring_timeout_s: 10s", "ring_timeout_s: 2s").replace("max_attempts: 3", "max_attempts: 1")
    dialplan.write_text(text)
    cluster = _Cluster(tmp_path, dialplan)
    try:
        cluster.start_worker("host-a", calls=8)
        cluster.wait_up("host-a")
        cluster.start_manager()
        assert cluster.wait_manager(180) == 0, (tmp_path / "manager.out").read_text()[-3000:]
    finally:
        cluster.stop()
    assert {row[0] for row in query(cluster.db, "SELECT outcome FROM attempts")} == {"no_answer"}
    speech = load_dialplan(dialplan).dialplan.speech
    cache = PromptCache(tmp_path / "host-a" / "prompts", make_tts(speech.tts, speech.language, None))
    names = [row[0] for row in query(cluster.db, "SELECT json_extract(fields, '$.first_name') FROM contacts")]
    missing = [n for n in names if not cache.has(f"Hello {n}, this is a test call. Do you have a minute?", speech.rate_hz)]
    assert len(names) == CONTACTS and not missing, f"no greeting rendered for {missing}"
