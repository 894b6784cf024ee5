"""A call's result travels as a message: the session factory's record rides on the worker's Ended,
over the broker too, and the campaign store takes it from there; JSON files per call are an optional copy."""

from __future__ import annotations

import json
from pathlib import Path

from voicebot.apps.bot_session import BotSessions
from voicebot.audio.frames import NARROWBAND
from voicebot.bus.jobs import decode_event, encode_event, worker_topic
from voicebot.calls.messages import Ended

DEMO = Path(__file__).parent.parent / "dialplans" / "demo_en.yaml"


class _Report:
    def __init__(self, record: dict) -> None:
        self.record = record

    def to_json(self) -> str:
        return json.dumps(self.record, ensure_ascii=False, indent=2)


class _EndedSession:
    """What ``record_call`` reads of a session that has ended."""

    def __init__(self, record: dict, customer: bytes = b"", bot: bytes = b"") -> None:
        self._record, self._audio = record, (customer, bot)

    def recording(self) -> tuple[bytes, bytes]:
        return self._audio

    def report(self, duration_ms: int) -> _Report:
        return _Report({**self._record, "duration_ms": duration_ms})


def test_the_record_is_kept_for_the_ended_message_and_written_only_when_asked(tmp_path: Path) -> None:
    record = {"outcome": "meeting_booked", "path": ["greeting", "goodbye"], "transcript": [{"speaker": "customer", "text": "ja, gern"}]}
    no_files = BotSessions(DEMO, tmp_path / "prompts")
    no_files.record_call("c1-a1", NARROWBAND, _EndedSession(record))
    assert no_files.take_record("c1-a1") == {**record, "duration_ms": 0}
    assert no_files.take_record("c1-a1") is None  # handed over once: nothing piles up in a long-lived worker
    assert list(tmp_path.iterdir()) == []

    calls = tmp_path / "calls"
    with_files = BotSessions(DEMO, tmp_path / "prompts", calls_dir=calls)
    with_files.record_call("c2-a1", NARROWBAND, _EndedSession(record, customer=b"\x01\x00" * 800, bot=b"\x02\x00" * 1600))
    kept = with_files.take_record("c2-a1")
    assert kept == json.loads((calls / "c2-a1.json").read_text()) and kept["duration_ms"] == 200
    assert (calls / "c2-a1.wav").is_file()


def test_an_ended_carries_its_record_over_the_broker() -> None:
    record = {"path": ["greeting"], "slots": {"day": "Dienstag"}, "transcript": []}
    ended = Ended("c1-a1", "answered", 200, "", 90, 2500, "interested", "remote", 125, 125, 0, record=record)
    topic = worker_topic("demo", "host-1", "events")
    assert decode_event(topic, encode_event(ended)).record == record
