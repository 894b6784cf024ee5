"""Sample-rate conversion (soxr): whole buffers, and a stream for 20 ms frames."""

from __future__ import annotations

import numpy as np
import soxr


def resample(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    if from_hz == to_hz or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2")
    y = soxr.resample(x, from_hz, to_hz, quality="HQ")
    return np.asarray(y, dtype="<i2").tobytes()


class StreamResampler:
    """Frame-by-frame conversion that keeps filter state between frames (no clicks at edges)."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz, self.to_hz = from_hz, to_hz
        self._stream = None if from_hz == to_hz else soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16", quality="HQ")

    def push(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        y = self._stream.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=last)
        return np.asarray(y, dtype="<i2").tobytes()
