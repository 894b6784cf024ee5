"""`voicebot operator`: the live operator's console, fed by a real mosquitto."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish

from voicebot.bus.broker import EmbeddedBroker
from voicebot.bus.schema import event_topic, make_event

HANDOFF = {
    "operator": "sales",
    "uri": "sip:600@pbx.local",
    "mode": "bridge",
    "warm": True,
    "node": "handoff_buying",
    "contact": {"first_name": "Anna", "company": "Acme Logistics", "phone": "+12125550100"},
    "transcript": [
        {"speaker": "bot", "text": "Hello Anna, do you have a minute?"},
        {"speaker": "customer", "text": "how much does it cost for forty trucks"},
    ],
    "briefing": "Incoming call from Anna at Acme Logistics. They said: how much does it cost. Press 1 to take the call.",
}


def _publish(port: int, campaign: str, kind: str, seq: int, attempt_id: str, data: dict | bytes) -> None:
    payload = data if isinstance(data, bytes) else make_event(kind, campaign, seq, time.time(), attempt_id, data).model_dump_json()
    publish.single(event_topic(campaign, kind), payload, qos=1, hostname="127.0.0.1", port=port)


def test_the_console_shows_each_handoff_with_its_context_and_how_it_ended(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "broker") as broker:
        out = tmp_path / "console.out"
        with open(out, "wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "voicebot.cli",
                    "operator",
                    "--broker",
                    f"mqtt://127.0.0.1:{broker.port}",
                    "--campaign",
                    "demo",
                    "--exit-after",
                    "1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "160"},
            )
        try:
            deadline = time.monotonic() + 30
            while "waiting for handoffs" not in out.read_text():
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "the console never subscribed"
                time.sleep(0.05)
            _publish(broker.port, "demo", "handoff.requested", 1, "c9-a1", b"\x00 not an event")
            _publish(broker.port, "other", "handoff.requested", 2, "c5-a1", {**HANDOFF, "contact": {"first_name": "Boris"}})
            _publish(broker.port, "demo", "handoff.requested", 3, "c1-a2", HANDOFF)
            _publish(broker.port, "demo", "attempt.ended", 4, "c1-a2", {"outcome": "handoff", "handoff": "bridged", "talk_ms": 9000})
            assert proc.wait(30) == 0, out.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()  # only the process this test started
                proc.wait(5)
    text = out.read_text()
    assert "not a voicebot event" in text  # the garbage was reported, and the console went on
    assert "Boris" not in text  # another campaign's handoff
    for expected in (
        "Incoming call: Anna",
        "Acme Logistics",
        "+12125550100",
        "customer: how much does it cost for forty trucks",
        "bot: Hello Anna, do you have a minute?",
        "handoff_buying",
        "bridge to sales",
        "Press 1 to take the call",
        "c1-a2: call ended, handoff bridged, outcome handoff",
    ):
        assert expected in text, f"{expected!r} not in the console's output:\n{text}"
