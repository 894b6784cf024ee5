"""Answering-machine detection from the first seconds after the answer.

A person answers with a short "Hello?" and waits; a machine talks on past a
few seconds ("Hi, you've reached Anna, I can't take your call..."), or beeps.
Pure state machine over per-frame voice flags plus a tone detector for the beep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voicebot.audio.frames import AudioFormat, to_array


@dataclass(frozen=True)
class AmdResult:
    kind: str  # human | machine | unknown
    reason: str  # short_greeting | long_greeting | many_words | beep | silence | timeout
    ts_ms: int


class BeepDetector:
    """A steady pure tone (400-2500 Hz) for at least ``min_ms``."""

    def __init__(self, fmt: AudioFormat, min_ms: int = 120, min_dbfs: float = -40.0, purity: float = 0.7) -> None:
        self.fmt, self.min_ms, self.purity = fmt, min_ms, purity
        self._min_power = (32768 * 10 ** (min_dbfs / 20)) ** 2
        self._freq: float | None = None
        self._run_ms = 0

    def process(self, frame: bytes) -> bool:
        x = to_array(frame).astype(np.float32)
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
        total = float(spectrum.sum())
        peak = int(np.argmax(spectrum))
        freq = peak * self.fmt.rate_hz / x.size
        power = float(np.mean(x * x))
        near = spectrum[max(0, peak - 1) : peak + 2].sum()
        is_tone = total > 0 and power >= self._min_power and 400 <= freq <= 2500 and near / total >= self.purity
        if is_tone and self._freq is not None and abs(freq - self._freq) <= 2 * self.fmt.rate_hz / x.size:
            self._run_ms += self.fmt.frame_ms
        elif is_tone:
            self._freq, self._run_ms = freq, self.fmt.frame_ms
        else:
            self._freq, self._run_ms = None, 0
        return self._run_ms >= self.min_ms


class AnsweringMachineDetector:
    def __init__(
        self,
        fmt: AudioFormat,
        initial_silence_ms: int = 2500,
        greeting_max_ms: int = 2400,
        after_greeting_silence_ms: int = 700,
        word_gap_ms: int = 120,
        max_words: int = 4,
        total_ms: int = 5000,
    ) -> None:
        self.fmt = fmt
        self.initial_silence_ms = initial_silence_ms
        self.greeting_max_ms = greeting_max_ms
        self.after_greeting_silence_ms = after_greeting_silence_ms
        self.word_gap_ms = word_gap_ms
        self.max_words = max_words
        self.total_ms = total_ms
        self._beep = BeepDetector(fmt)
        self._elapsed = 0
        self._speech_start: int | None = None
        self._silence_ms = 0
        self._words = 0
        self._in_word = False
        self.result: AmdResult | None = None

    def process(self, frame: bytes, voiced: bool) -> AmdResult | None:
        """One frame after the answer; returns the verdict once, then None."""
        if self.result is not None:
            return None
        t = self._elapsed
        self._elapsed += self.fmt.frame_ms
        if self._beep.process(frame):
            return self._done("machine", "beep")
        if voiced:
            if self._speech_start is None:
                self._speech_start = t
            if not self._in_word:
                self._words += 1
                self._in_word = True
            self._silence_ms = 0
        else:
            self._silence_ms += self.fmt.frame_ms
            if self._silence_ms >= self.word_gap_ms:
                self._in_word = False
        if self._speech_start is None:
            if self._elapsed >= self.initial_silence_ms:
                return self._done("unknown", "silence")
            return None
        talking_ms = self._elapsed - self._speech_start - self._silence_ms
        if self._words > self.max_words:
            return self._done("machine", "many_words")
        if talking_ms >= self.greeting_max_ms:
            return self._done("machine", "long_greeting")
        if self._silence_ms >= self.after_greeting_silence_ms:
            return self._done("human", "short_greeting")
        if self._elapsed >= self.total_ms:
            return self._done("unknown", "timeout")
        return None

    def _done(self, kind: str, reason: str) -> AmdResult:
        self.result = AmdResult(kind, reason, self._elapsed)
        return self.result
