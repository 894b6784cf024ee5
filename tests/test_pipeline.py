"""The whole speech pipeline with real models: real VAD, barge-in, ASR (PocketSphinx, Vosk) and TTS.

Customer answers are synthesised (espeak-ng, Piper) and degraded like a phone
line (8 kHz, noise, μ-law); the call runs through the same CallSession a real
call uses, on the simulator's virtual 20 ms clock. Measured delays are printed
(run with -s to see them); the targets are checked by `voicebot bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.frames import NARROWBAND, gain, read_wav, rms_dbfs, split_frames, write_wav
from voicebot.audio.line import telephone
from voicebot.dialplan import load_dialplan
from voicebot.session import CallSession, Interrupt, PromptHeard
from voicebot.simulate import CallSimulator, CustomerAudio, simulate_call
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.select import make_asr_engine
from voicebot.speech.tts import make_tts

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "dialplans" / "demo_en.yaml"
KOREAN = Path(__file__).parent / "data" / "korean.yaml"


@pytest.fixture(scope="session")
def prompt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture(scope="session")
def no_models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no_models")


@pytest.fixture(scope="session")
def espeak(tmp_path_factory):
    folder = tmp_path_factory.mktemp("customer")
    counter = iter(range(10_000))

    def say(text: str, voice: str = "en-us", snr_db: float = 20.0, seed: int = 1) -> list[bytes]:
        wav = folder / f"{next(counter)}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True, timeout=30)
        pcm, rate = read_wav(wav)
        return list(split_frames(telephone(pcm, rate, snr_db, seed), NARROWBAND))

    return say


def real_session(path: Path, prompt_dir: Path, models: Path, contact=None) -> CallSession:
    loaded = load_dialplan(path)
    speech = loaded.dialplan.speech
    cache = PromptCache(prompt_dir, make_tts(speech.tts, speech.language, models))
    asr = make_asr_engine(speech.asr, speech.language, models)
    return CallSession(loaded.graph, asr.stream(NARROWBAND.rate_hz), cache, contact or {"first_name": "Anna"})


def interrupts(session):
    return [e for e in session.log if isinstance(e, Interrupt)]


def heard(session, prompt_id):
    return [e for e in session.log if isinstance(e, PromptHeard) and e.prompt_id == prompt_id]


def test_korean_answers_drive_branches_through_vosk(prompt_dir, no_models, espeak):
    session = real_session(KOREAN, prompt_dir, no_models)
    turns = [CustomerAudio(espeak("네 좋아요", "ko"), 500), CustomerAudio(espeak("네 좋아요", "ko", seed=2), 500)]
    rep, _ = simulate_call(session, turns)
    assert rep.path == ["greeting", "offer", "handoff"], rep.turns
    assert rep.outcome == "handoff"
    session = real_session(KOREAN, prompt_dir, no_models)
    rep, _ = simulate_call(session, [CustomerAudio(espeak("아니요", "ko", seed=3), 500)])
    assert rep.path == ["greeting", "bye_no"], rep.turns
    assert rep.outcome == "not_interested"


def _bot_silence_after(sim: CallSimulator, onset_ms: int) -> int:
    """When the bot's channel went quiet after the customer's onset (ms), measured on the recording."""
    for i in range(onset_ms // 20, len(sim.outbound)):
        if rms_dbfs(sim.outbound[i]) < -60:
            return i * 20
    raise AssertionError("the bot never went quiet")


def _first_voice(sim: CallSimulator, after_ms: int = 0) -> int:
    for i in range(after_ms // 20, len(sim.inbound)):
        if rms_dbfs(sim.inbound[i]) > -35:
            return i * 20
    raise AssertionError("the customer never spoke")


def test_barge_in_stops_the_prompt_and_the_script_hears_it(prompt_dir, no_models, piper_voice, capsys):
    # (espeak-ng's "I am busy" comes out of Whisper as "I am really": a reprompt, as a mishearing should be)
    session = real_session(DEMO, prompt_dir, no_models)
    words = piper_voice("stop, I am busy right now")
    rep, sim = simulate_call(session, [CustomerAudio(words, 1000, "prompt")], max_ms=60_000)
    kinds = [i.kind for i in interrupts(session)]
    assert kinds[:2] == ["pause", "stop"], kinds
    greeting = heard(session, "greeting")[0]
    assert greeting.interrupted and greeting.played_ms < greeting.total_ms
    assert greeting.total_ms >= 4000  # a long prompt, interrupted about 1 s in
    onset = _first_voice(sim)
    quiet = _bot_silence_after(sim, onset)
    with capsys.disabled():
        print(f"\n  barge-in: customer onset {onset} ms, bot silent at {quiet} ms: stop delay {quiet - onset} ms")
    assert quiet - onset <= 300
    assert rep.path[:2] == ["greeting", "ask_callback"], rep.turns


def test_backchannel_pauses_and_the_prompt_resumes(prompt_dir, no_models, espeak):
    session = real_session(DEMO, prompt_dir, no_models)
    rep, sim = simulate_call(
        session, [CustomerAudio(espeak("uh-huh"), 1500, "prompt"), CustomerAudio(espeak("take me off your list"), 500)], max_ms=90_000
    )
    kinds = [i.kind for i in interrupts(session)]
    assert kinds[:2] == ["pause", "resume"], interrupts(session)
    greeting = heard(session, "greeting")[0]
    assert not greeting.interrupted and greeting.played_ms == greeting.total_ms


def test_own_echo_and_a_cough_do_not_stop_the_prompt(prompt_dir, no_models):
    session = real_session(DEMO, prompt_dir, no_models)
    session.start(0)
    rng = np.random.default_rng(7)
    echo: list[bytes] = []
    for i in range(300):  # 6 s: the prompt comes back at -20 dB, and a 120 ms cough 2 s in
        out = session.next_outbound(i * 20)
        back = gain(out, -20)
        if 100 <= i < 106:
            burst = rng.normal(0, 6000, NARROWBAND.samples_per_frame).astype("<i2").tobytes()
            back = burst
        echo.append(back)
        session.on_inbound(telephone(back, 8000, 30, i) if rms_dbfs(back) > -90 else back, i * 20)
    assert not [i for i in interrupts(session) if i.kind == "stop"]
    assert not heard(session, "greeting") or not heard(session, "greeting")[0].interrupted


def test_simulate_command_prints_turn_timings(tmp_path, prompt_dir, piper_voice):
    answers = tmp_path / "answers"
    answers.mkdir()
    for i, text in enumerate(["you have the wrong number", "yes"], start=1):  # "yes": to a confirmation, if asked
        write_wav(answers / f"{i:02d}.wav", b"".join(piper_voice(text, seed=i)), 8000)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "simulate",
            str(DEMO),
            "--audio",
            str(answers),
            "--out",
            str(out),
            "--cache",
            str(prompt_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},  # rich wraps the table's headers to fit a narrower terminal
    )
    assert proc.returncode == 0, proc.stderr
    assert "speech end → bot audio" in proc.stdout and "wrong_number_goodbye" in proc.stdout, proc.stdout
    import json

    log = json.loads((out / "call.json").read_text())
    turn = log["turns"][0]
    assert turn["end_of_speech_to_bot_audio_ms"] is not None and turn["end_of_speech_to_bot_audio_ms"] <= 700
    pcm, rate = read_wav(out / "call.wav")
    assert rate == 8000 and len(pcm) > 0


@pytest.fixture(scope="session")
def piper_voice(tmp_path_factory):
    from voicebot.speech.piper_tts import PiperTts

    tts = PiperTts("en_US-joe-medium", length_scale=1.1)  # a little slower than the bot, to sound like someone else

    def say(text: str, snr_db: float = 20.0, seed: int = 1) -> list[bytes]:
        return list(split_frames(telephone(tts.synthesize(text, 16000), 16000, snr_db, seed), NARROWBAND))

    return say


# An answer that ends the call may be confirmed first ("Just to be sure...?"): those conversations end
# with a "yes", which the simulator plays only if the bot asks (a confirmation adds no node to the path).
CONVERSATIONS = [
    # (voice, answers, expected path, outcome)
    (
        "espeak",
        ["yes sure", "we keep them in a spreadsheet", "yes", "tuesday", "yes", "yes"],
        ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"],
        "meeting_booked",
    ),
    ("piper", ["i am busy right now", "tomorrow at three"], ["greeting", "ask_callback", "confirm_callback"], "callback"),
    (
        "espeak",
        ["we already have a solution", "no", "yes"],
        ["greeting", "objection_already_have", "goodbye_not_interested"],
        "not_interested",
    ),
    ("piper", ["how much does it cost"], ["greeting", "handoff_buying"], "handoff"),
    ("espeak", ["take me off your list", "yes"], ["greeting", "dnc_goodbye"], "dnc"),
    ("piper", ["just send me an email", "email is enough", "yes"], ["greeting", "objection_send_offer", "goodbye_send_offer"], "send_info"),
]


@pytest.mark.parametrize("voice,answers,path,outcome", CONVERSATIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_telephone_answers_drive_the_demo_through_the_default_recognisers(
    voice, answers, path, outcome, prompt_dir, no_models, espeak, piper_voice
):
    speak = espeak if voice == "espeak" else piper_voice
    session = real_session(DEMO, prompt_dir, no_models)
    turns = [CustomerAudio(speak(text, seed=i), 400, name=text) for i, text in enumerate(answers)]
    rep, _ = simulate_call(session, turns, max_ms=180_000)
    heard = [(t["node"], t["text"]) for t in rep.turns]
    assert rep.path == path, heard
    assert rep.outcome == outcome, heard
    if outcome == "callback":
        assert rep.slots["callback_time"] == "tomorrow 15:00"
