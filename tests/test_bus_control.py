"""Steering a running campaign over MQTT: pause (hold), concurrency, resume, stop, and a garbled command.

`voicebot run` against a sipp UAS that answers and hangs up after 1 s; the
test talks to it only through a real mosquitto, as a manager's tool would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import query

from voicebot.bus.broker import EmbeddedBroker
from voicebot.bus.control import ControlCommand, RefusedCommand, control_topic, parse_command

DATA = Path(__file__).parent / "data" / "campaign"


def test_commands_are_checked_before_anything_is_done() -> None:
    assert parse_command(b'{"command": "concurrency", "value": 5, "id": "x"}') == ControlCommand(command="concurrency", value=5, id="x")
    for payload, error in [
        (b'{"command": "explode"}', "command: Input should be"),
        (b'{"command": "concurrency"}', "concurrency needs a value"),
        (b'{"command": "concurrency", "value": 0}', "concurrency needs a value"),
        (b'{"command": "pause", "value": 3}', "pause takes no value"),
        (b'{"command": "pause", "password": "x"}', "password: Extra inputs"),
        (b"\xff garbage", "Invalid JSON"),
    ]:
        refused = parse_command(payload)
        assert isinstance(refused, RefusedCommand) and error in refused.error, (payload, refused)
    assert control_topic("demo/en") == "voicebot/v1/demo_en/control"


class _Bus:
    """The test's MQTT client: sends commands, collects the campaign's events."""

    def __init__(self, port: int, campaign: str) -> None:
        import paho.mqtt.client as mqtt

        self.campaign = campaign
        self.events: list[dict] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-steering")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"voicebot/v1/{campaign}/events/#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda c, u, m: self._take(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10)

    def _take(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def send(self, payload: dict | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(control_topic(self.campaign), data, qos=1).wait_for_publish(5)

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind]

    def wait_for(self, kind: str, match: dict, timeout_s: float = 30) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.of(kind):
                if all(e["data"].get(k) == v for k, v in match.items()):
                    return e
            time.sleep(0.05)
        pytest.fail(f"no {kind} event with {match} in {timeout_s} s; got {self.of(kind)}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def steered_run(sipp, tmp_path: Path):
    port = sipp("uas_answer", "-d", "1000", "-m", "500", "-l", "100")
    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text().replace("127.0.0.1:5999", f"127.0.0.1:{port}"))
    broker = EmbeddedBroker(tmp_path / "broker").start()
    bus = _Bus(broker.port, "runner-test")
    db = tmp_path / "campaign.db"
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115 - the process owns it
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "run",
            str(dialplan),
            "--contacts",
            str(DATA / "contacts.csv"),
            "--db",
            str(db),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--grace",
            "30",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    try:
        yield run, bus, db, tmp_path / "run.out"
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)  # only the run this test started
            run.wait(10)
        bus.close()
        broker.stop()


def _dialling(db: Path) -> int:
    return query(db, "SELECT COUNT(*) FROM attempts WHERE state IN ('created', 'dialling')")[0][0]


def test_a_campaign_is_held_resized_resumed_over_mqtt(steered_run) -> None:
    run, bus, db, out = steered_run
    deadline = time.monotonic() + 120
    while len(bus.of("attempt.ended")) < 3:
        assert run.poll() is None, out.read_text()[-3000:]
        assert time.monotonic() < deadline, "no call ended in time"
        time.sleep(0.05)

    bus.send({"command": "pause", "id": "p1", "by": "test"})
    held = bus.wait_for("campaign.control", {"id": "p1"})
    assert held["data"]["ok"] and held["data"]["by"] == "test"
    bus.wait_for("campaign.progress", {"state": "held"})
    deadline = time.monotonic() + 30
    while _dialling(db):  # the calls in progress end by themselves (1 s each)
        assert time.monotonic() < deadline, "calls in progress did not finish while held"
        time.sleep(0.1)
    attempts = query(db, "SELECT COUNT(*) FROM attempts")[0][0]
    time.sleep(2.0)
    assert query(db, "SELECT COUNT(*) FROM attempts")[0][0] == attempts, "a call was dialled while held"
    assert run.poll() is None, "a held run must wait for resume, not exit"
    assert attempts < 24

    bus.send(b'{"command": "explode", "id": "e1"}')
    refused = bus.wait_for("campaign.control", {"ok": False})
    assert refused["data"]["command"] is None and "command" in refused["data"]["detail"]

    bus.send({"command": "concurrency", "value": 2, "id": "c1"})
    assert bus.wait_for("campaign.control", {"id": "c1"})["data"]["ok"]
    bus.send({"command": "resume", "id": "r1"})
    assert bus.wait_for("campaign.control", {"id": "r1"})["data"]["ok"]
    most = 0
    deadline = time.monotonic() + 120
    while run.poll() is None:
        most = max(most, _dialling(db))
        assert time.monotonic() < deadline, "the resumed run did not finish"
        time.sleep(0.02)
    assert run.returncode == 0, out.read_text()[-3000:]
    assert 1 <= most <= 2, f"{most} calls at once after concurrency 2"
    assert query(db, "SELECT COUNT(*) FROM contacts WHERE status = 'done'")[0][0] == 24
    last = bus.wait_for("campaign.progress", {"state": "finished"})
    assert last["data"]["done"] == 24 and last["data"]["concurrency"] == 2


def test_stop_over_mqtt_ends_the_calls_now_and_the_run_can_resume_later(steered_run) -> None:
    run, bus, db, out = steered_run
    deadline = time.monotonic() + 120
    while not bus.of("call.answered"):
        assert run.poll() is None, out.read_text()[-3000:]
        assert time.monotonic() < deadline, "no call was answered in time"
        time.sleep(0.02)
    bus.send({"command": "stop", "id": "s1"})
    assert bus.wait_for("campaign.control", {"id": "s1"})["data"]["ok"]
    assert run.wait(60) == 3, out.read_text()[-3000:]  # 3: paused, run again to resume
    stopped = query(db, "SELECT COUNT(*) FROM attempts WHERE outcome = 'stopped'")[0][0]
    assert stopped >= 1 and _dialling(db) == 0
    assert query(db, "SELECT COUNT(*) FROM contacts WHERE status = 'pending'")[0][0] > 0
