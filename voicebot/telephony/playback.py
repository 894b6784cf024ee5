"""A stand-in call session: plays PCM in a loop and records what it hears.

Used by the telephony tests (and by anyone checking a trunk's audio path)
until the worker pool wires the real ``CallSession``; it has exactly the shape
the worker drives (``voicebot.telephony.worker.MediaSession``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from voicebot.audio.frames import AudioFormat, write_wav


class PlaybackSession:
    """Plays PCM in a loop, records what it hears, optionally ends itself."""

    def __init__(self, fmt: AudioFormat, pcm: bytes, record_path: Path | None = None, hang_up_after_ms: int | None = None) -> None:
        self.fmt = fmt
        self._pcm = pcm or fmt.silence()
        self._record_path = record_path
        self._hang_up_after_ms = hang_up_after_ms
        self.heard = bytearray()
        self.digits = ""
        self.outcome: str | None = None
        self.ended = False
        self._started = False

    def start(self, ts_ms: int = 0) -> None:
        self._started = True

    def next_outbound(self, ts_ms: int) -> bytes:
        if not self._started:
            return self.fmt.silence()
        n = self.fmt.bytes_per_frame
        pos = self.fmt.nbytes(ts_ms) % len(self._pcm)
        frame = self._pcm[pos : pos + n]
        return frame if len(frame) == n else frame + self._pcm[: n - len(frame)]

    def on_inbound(self, frame: bytes, ts_ms: int) -> None:
        if self.ended:
            return
        self.heard += frame
        if self._hang_up_after_ms is not None and ts_ms >= self._hang_up_after_ms:
            self.outcome = "completed"
            self._finish()

    def dtmf(self, digit: str, ts_ms: int) -> None:
        self.digits += digit

    def remote_hangup(self, ts_ms: int) -> None:
        self.outcome = self.outcome or "customer_hangup"
        self._finish()

    def local_hangup(self, ts_ms: int, outcome: str) -> None:
        if not self.ended:
            self.outcome = self.outcome or outcome
            self._finish()

    def _finish(self) -> None:
        self.ended = True
        if self._record_path is not None:
            write_wav(self._record_path, bytes(self.heard), self.fmt.rate_hz)


def playback_sessions(
    pcm: bytes, record_dir: Path | None = None, hang_up_after_ms: int | None = None
) -> Callable[[str, AudioFormat, dict[str, str]], PlaybackSession]:
    """A picklable factory of ``PlaybackSession``s recording to ``record_dir/<attempt_id>.wav``."""
    return functools.partial(_playback_session, pcm, record_dir, hang_up_after_ms)


def _playback_session(
    pcm: bytes, record_dir: Path | None, hang_up_after_ms: int | None, attempt_id: str, fmt: AudioFormat, contact: dict[str, str]
) -> PlaybackSession:
    path = record_dir / f"{attempt_id}.wav" if record_dir is not None else None
    return PlaybackSession(fmt, pcm, path, hang_up_after_ms)
