"""The one place for the telephony audio format: 16-bit mono PCM in 20 ms frames.

Rates are in hertz, times in milliseconds, sizes in bytes; PCM is little-endian
signed 16-bit (what pjmedia, Vosk, PocketSphinx and Piper all use).
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

SAMPLE_WIDTH_BYTES = 2
FRAME_MS = 20


@dataclass(frozen=True)
class AudioFormat:
    rate_hz: int
    frame_ms: int = FRAME_MS

    @property
    def samples_per_frame(self) -> int:
        return self.rate_hz * self.frame_ms // 1000

    @property
    def bytes_per_frame(self) -> int:
        return self.samples_per_frame * SAMPLE_WIDTH_BYTES

    def ms(self, nbytes: int) -> int:
        """Duration of ``nbytes`` of PCM in this format."""
        return nbytes * 1000 // (self.rate_hz * SAMPLE_WIDTH_BYTES)

    def nbytes(self, ms: int) -> int:
        return (self.rate_hz * ms // 1000) * SAMPLE_WIDTH_BYTES

    def silence(self, ms: int | None = None) -> bytes:
        return bytes(self.nbytes(self.frame_ms if ms is None else ms))


NARROWBAND = AudioFormat(8000)  # G.711 trunks
WIDEBAND = AudioFormat(16000)


def split_frames(pcm: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    """Whole frames of ``pcm``; the last one padded with silence."""
    step = fmt.bytes_per_frame
    for start in range(0, len(pcm), step):
        frame = pcm[start : start + step]
        yield frame if len(frame) == step else frame + bytes(step - len(frame))


def to_array(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def rms_dbfs(pcm: bytes) -> float:
    """Level of a frame in dBFS (-inf for digital silence)."""
    samples = to_array(pcm).astype(np.float32)
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")


def gain(pcm: bytes, db: float) -> bytes:
    """The same audio louder or quieter by ``db``, clipped to 16 bits."""
    samples = to_array(pcm).astype(np.float32) * (10 ** (db / 20))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def mix(a: bytes, b: bytes) -> bytes:
    """Sum of two equally long PCM buffers (the shorter one padded), clipped."""
    n = max(len(a), len(b))
    x = to_array(a.ljust(n, b"\0")).astype(np.int32) + to_array(b.ljust(n, b"\0")).astype(np.int32)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def read_wav(path: str | Path | BinaryIO) -> tuple[bytes, int]:
    """Mono 16-bit PCM and its rate from a WAV file or stream (stereo is averaged to mono)."""
    with wave.open(path if hasattr(path, "read") else str(path), "rb") as w:
        if w.getsampwidth() != SAMPLE_WIDTH_BYTES:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV; 16-bit PCM expected")
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = w.readframes(w.getnframes())
    if channels > 1:
        samples = to_array(pcm).reshape(-1, channels).astype(np.int32).mean(axis=1)
        pcm = samples.astype("<i2").tobytes()
    return pcm, rate


def write_wav(path: str | Path, pcm: bytes, rate_hz: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH_BYTES)
        w.setframerate(rate_hz)
        w.writeframes(pcm)


def interleave(left: bytes, right: bytes) -> bytes:
    """Two mono buffers as one stereo buffer (the shorter padded with silence)."""
    n = max(len(left), len(right))
    l_arr, r_arr = to_array(left.ljust(n, b"\0")), to_array(right.ljust(n, b"\0"))
    return np.column_stack([l_arr, r_arr]).astype("<i2").tobytes()


def write_stereo(path: str | Path, left: bytes, right: bytes, rate_hz: int) -> None:
    """A call recording: the customer on the left, the bot on the right."""
    write_wav(path, interleave(left, right), rate_hz, channels=2)
