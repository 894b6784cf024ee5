"""A number with an extension: the main number is dialled, the extension's keys go out (RFC 2833) after the
answer and a pause, and only then does the bot speak. baresip, answering as the office PBX, logs each key."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import events_until_ended

from voicebot.audio.frames import write_wav
from voicebot.peers.baresip import BaresipPeer


def test_the_extension_is_pressed_after_the_answer_and_the_bot_speaks_after_it(worker, tmp_path: Path) -> None:
    from voicebot.calls.messages import Answered, Dial, Ended

    attendant = tmp_path / "attendant.wav"
    write_wav(attendant, bytes(16000 * 15), 8000)  # silence: baresip hangs up when its WAV ends
    with BaresipPeer("office", tmp_path / "peers", attendant) as peer:
        w, _ = worker(peer.sip_port, hang_up_after_ms=1500)
        w.send(Dial("x1", "office", (("first_name", "Ann"),), keys_after_answer=",,,,12"))  # 2 s, then 1 and 2
        events = events_until_ended(w, {"x1"}, timeout_s=30)
        peer.wait_idle(timeout_s=10)
        log = (peer.home / "baresip.log").read_text(errors="replace")
    assert any(isinstance(e, Answered) for e in events)
    (ended,) = [e for e in events if isinstance(e, Ended)]
    assert ended.outcome == "answered"
    assert re.findall(r"received event: '(.)' \(end=1\)", log) == ["1", "2"], log[-2000:]
    # the bot's first sound came after the 2 s pause and the keys, not at the answer
    assert ended.first_sound_out_ms is not None and ended.first_sound_out_ms >= 1900, ended


def test_the_pause_becomes_commas_and_the_keys_travel_to_remote_workers() -> None:
    import pytest

    from voicebot.bus.jobs import JobMessageError, decode_job, encode_job
    from voicebot.calls.messages import Dial
    from voicebot.campaign.runner import extension_keys

    assert extension_keys("12", 2.0) == ",,,,12"
    assert extension_keys("12", 0.7) == ",,12" and extension_keys("", 2.0) == ""
    dial = Dial("c1-a1", "+79267654321", (("first_name", "Иван"),), ",,,,12")
    assert decode_job("jobs", encode_job(dial))[0] == dial
    with pytest.raises(JobMessageError, match="keys_after_answer"):
        decode_job("jobs", encode_job(Dial("c1-a1", "+79267654321", (), "12; rm -rf")))
