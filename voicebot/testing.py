"""Fakes and a call timeline for unit tests of the call session (no models, no SIP).

Customer "speech" is synthetic: loud frames whose first sample carries the
utterance number, so ``FakeAsr`` can reveal that utterance's words as the frames
arrive (one word per ``ms_per_word``), as a streaming recogniser would.
``FakeVoice`` calls a frame voiced when it is loud. Real models and real VAD
are for the integration tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voicebot.audio.frames import AudioFormat, rms_dbfs, to_array
from voicebot.simulate import CallSimulator, CustomerAudio
from voicebot.speech.asr import AsrResult

_MARK = 1000
_LEVEL = 6000


def speech_frames(fmt: AudioFormat, utterance: int, ms: int) -> list[bytes]:
    """``ms`` of synthetic speech tagged with ``utterance``."""
    rng = np.random.default_rng(utterance)
    frames = []
    for _ in range(ms // fmt.frame_ms):
        x = rng.integers(-_LEVEL, _LEVEL, fmt.samples_per_frame).astype("<i2")
        x[0] = _MARK + utterance
        frames.append(x.tobytes())
    return frames


def utterance_of(frame: bytes) -> int | None:
    x = to_array(frame)
    return int(x[0]) - _MARK if x.size and _MARK <= x[0] < _MARK + 1000 and rms_dbfs(frame) > -30 else None


class FakeVoice:
    """Voiced when loud, with the same echo gate interface as VoiceDetector."""

    def __init__(self, min_dbfs: float = -40.0) -> None:
        self.min_dbfs = min_dbfs

    def note_played(self, frame: bytes) -> None:
        pass

    def is_voice(self, frame: bytes) -> bool:
        return rms_dbfs(frame) > self.min_dbfs


class FakeAsr:
    """Reveals the words of the utterance whose frames it is fed."""

    def __init__(self, texts: Sequence[str], ms_per_word: int = 200, frame_ms: int = 20, confidence: float = 0.9) -> None:
        self.texts = list(texts)
        self.ms_per_word = ms_per_word
        self.frame_ms = frame_ms
        self.confidence = confidence
        self.rate_hz = 8000
        self.vocabularies: list[list[str] | None] = []
        self.reset()

    def reset(self) -> None:
        self._utterance: int | None = None
        self._voiced_ms = 0

    def want_hints(self, on: bool) -> None:
        """Nothing to switch: see ``AsrStream.want_hints``."""

    def set_vocabulary(self, phrases) -> None:
        self.vocabularies.append(list(phrases) if phrases is not None else None)

    def _text(self) -> str:
        if self._utterance is None:
            return ""
        words = self.texts[self._utterance].split()
        return " ".join(words[: max(0, min(len(words), self._voiced_ms // self.ms_per_word))])

    def push(self, pcm: bytes) -> list[AsrResult]:
        u = utterance_of(pcm)
        if u is None:
            return []
        if u != self._utterance:
            self._utterance, self._voiced_ms = u, 0
        self._voiced_ms += self.frame_ms
        text = self._text()
        return [AsrResult(text, self.confidence, False)] if text else []

    def peek(self) -> AsrResult:
        text = self._text()
        return AsrResult(text, self.confidence if text else 0.0, False)

    def flush(self) -> AsrResult:
        # the whole utterance: a real recogniser's final result sees all of it
        text = self.texts[self._utterance] if self._utterance is not None and self._voiced_ms else ""
        self.reset()
        return AsrResult(text, self.confidence if text else 0.0, True)


class FakePrompts:
    """A prompt's audio: a quiet tone, 60 ms per character (so longer text plays longer)."""

    def __init__(self, ms_per_char: int = 60) -> None:
        self.ms_per_char = ms_per_char
        self.requests: list[str] = []

    def get(self, text: str, rate_hz: int) -> bytes:
        self.requests.append(text)
        n = rate_hz * self.ms_per_char * max(1, len(text)) // 1000
        t = np.arange(n) / rate_hz
        return (2000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()

    def get_wav(self, wav, rate_hz: int) -> bytes:
        from voicebot.audio.frames import read_wav
        from voicebot.audio.resample import resample

        pcm, rate = read_wav(wav)
        return resample(pcm, rate, rate_hz)


@dataclass
class CustomerLine:
    """One thing the customer says: ``text`` for ``ms``, starting ``delay_ms`` after the cue."""

    text: str
    ms: int = 800
    delay_ms: int = 300
    cue: str = "listening"  # listening: after the bot stops talking; prompt: after the bot starts a prompt


class Timeline(CallSimulator):
    """The simulator driven by synthetic customer lines (utterance i is ``lines[i]``)."""

    def __init__(self, fmt: AudioFormat, lines: Sequence[CustomerLine]) -> None:
        turns = [CustomerAudio(speech_frames(fmt, i, line.ms), line.delay_ms, line.cue, line.text) for i, line in enumerate(lines)]
        super().__init__(fmt, turns)
