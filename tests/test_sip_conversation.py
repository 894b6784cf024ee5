"""Whole conversations over SIP: the real bot in a media worker, baresip as the person.

The customer is a baresip that auto-answers and plays a WAV of spoken answers
laid out where the bot will listen (``voicebot.peers.customer``); it records
what it hears. The bot runs PocketSphinx and Piper exactly as in a campaign.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import events_until_ended
from voicebot.audio.frames import NARROWBAND, read_wav
from voicebot.config import AsrSettings, Trunk
from voicebot.dialplan import load_dialplan
from voicebot.peers.customer import script_customer, speak
from voicebot.session import CallSession
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.select import make_asr_engine
from voicebot.speech.tts import make_tts

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "dialplans" / "demo_en.yaml"
CONTACT = {"first_name": "Anna", "company": "Northwind Traders"}

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed (make setup)")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prompts")


def recording_dialplan(folder: Path, extra: str = "") -> Path:
    path = folder / "demo.yaml"
    text = DEMO.read_text().replace("  ring_timeout_s: 30s", "  ring_timeout_s: 30s\n  record_calls: true")
    path.write_text(text + extra)
    return path


def rehearse(dialplan: Path, prompts: Path, answers: list[str], **kwargs):
    """The customer's WAV for these answers, timed against this dialplan's prompts."""
    loaded = load_dialplan(dialplan)
    speech = loaded.dialplan.speech
    cache = PromptCache(prompts, make_tts(speech.tts, speech.language, None))
    asr = make_asr_engine(speech.asr, speech.language, None)
    frames = [speak(text, NARROWBAND, seed=i) for i, text in enumerate(answers)]
    return script_customer(CallSession(loaded.graph, asr.stream(NARROWBAND.rate_hz), cache, CONTACT), frames, **kwargs)


def run_call(dialplan: Path, prompts: Path, uri_port: int, number: str, calls: Path, timeout_s: float = 120.0):
    from voicebot.telephony.bot_session import BotSessions
    from voicebot.telephony.messages import Dial, Ended
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{uri_port}")
    w = WorkerProcess(WorkerSettings(trunk, BotSessions(dialplan, prompts, calls_dir=calls)))
    try:
        w.start(timeout_s=60)
        w.send(Dial("c1", number, tuple(CONTACT.items())))
        events = events_until_ended(w, {"c1"}, timeout_s=timeout_s)
    finally:
        assert w.stop(timeout_s=15) == 0
    (ended,) = [e for e in events if isinstance(e, Ended)]
    return ended, events, json.loads((calls / "c1.json").read_text())


def transcribe(wav: Path, start_s: float, end_s: float) -> str:
    """Unrestricted PocketSphinx (its n-gram model, no grammar) over part of a recording."""
    pcm, rate = read_wav(wav)
    stream = make_asr_engine(AsrSettings(engine="pocketsphinx"), "en", None).stream(rate)
    stream.set_vocabulary(None)
    stream.push(pcm[int(start_s * rate) * 2 : int(end_s * rate) * 2])
    return stream.flush().text


def test_a_whole_sales_conversation_over_sip(baresip, prompts, tmp_path: Path, capsys) -> None:
    dialplan = recording_dialplan(tmp_path)
    answers = ["yes sure", "we keep them in a spreadsheet", "yes", "tuesday", "yes"]
    expected = ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"]
    track = rehearse(dialplan, prompts, answers)
    assert track.rehearsal.path == expected  # the rehearsal itself understood the answers
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))

    ended, _, record = run_call(dialplan, prompts, anna.sip_port, "anna", tmp_path / "calls")

    heard = [(t["node"], t["text"]) for t in record["turns"]]
    with capsys.disabled():
        print(f"\n  over SIP: {heard}; 200 OK → greeting {ended.first_sound_out_ms} ms")
    assert (ended.outcome, ended.sip_code, ended.session_outcome) == ("answered", 200, "meeting_booked"), heard
    assert record["path"] == expected, heard
    assert ended.hangup_by == "local"  # the bot said goodbye and hung up; the customer's WAV had not ended
    assert (tmp_path / "calls" / "c1.wav").is_file()
    # what the customer's phone received is the bot's speech: recognisable words of the greeting
    (rec,) = anna.recordings()
    words = set(transcribe(rec.heard, 0.0, 9.0).split())
    greeting_words = {"help", "companies", "third", "minute", "talk", "cloud", "hosting", "bills"}
    assert len(words & greeting_words) >= 3, words
