"""A session factory that notes when the media clock asks each call for a frame.

The worker's clock thread calls ``next_outbound`` of every answered call once a
tick (pjmedia's ``onFrameRequested`` → ``MediaPort`` → the session), so the
gaps between those calls are the media clock as Python sees it, GIL waits
included: exactly what stretches when a media process is overloaded. Wrapping
the real factory measures that without touching ``voicebot.telephony``: the
wrapper costs one ``time.monotonic()`` and an array append per frame, and only
in benchmarks.

It also times each turn on the wall clock: from the start of the ``on_inbound``
call in which the session decided the person's turn was over (a new
``CustomerSaid`` in its log; ASR flush, script engine and prompt lookup happen
inside that call) to the first ``next_outbound`` that hands the bridge a frame
of a prompt that starts there. The session's own record cannot
show this: it stamps both ends with media time.

When the call ends, its tick times (CLOCK_MONOTONIC seconds, comparable across
processes) go to ``<ticks_dir>/<attempt_id>.ticks`` (float64) and its turns to
``<attempt_id>.turns.json``.
"""

from __future__ import annotations

import json
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio.frames import AudioFormat


class TimedSession:
    """Delegates everything to ``inner``; records the clock ticks of ``next_outbound``."""

    def __init__(self, inner: object, path: Path) -> None:
        self._inner = inner
        self._path = path
        self._ticks = array("d")
        self._saved = False
        self._decided: tuple[float, int] | None = None  # (when, endpointing ms) of a turn not yet answered
        self._turns: list[dict] = []

    def __getattr__(self, name: str):  # noqa: ANN204 - outcome, ended, handoff_due, take_keys... of the real session
        return getattr(self._inner, name)

    def next_outbound(self, ts_ms: int) -> bytes:
        now = time.monotonic()
        self._ticks.append(now)
        frame = self._inner.next_outbound(ts_ms)
        decided = self._decided
        if decided is not None:
            current = self._inner.playout.current
            # (prompt id, played ms, total ms): one frame played means this frame is a prompt's first
            if current is not None and current[1] <= self._inner.fmt.frame_ms:
                self._decided = None
                wire_ms = (now - decided[0]) * 1000.0
                self._turns.append(
                    {
                        "decision_to_first_frame_ms": round(wire_ms, 2),
                        "endpointing_ms": decided[1],
                        "voice_to_voice_ms": round(decided[1] + wire_ms, 2),
                    }
                )
        return frame

    def on_inbound(self, frame: bytes, ts_ms: int) -> None:
        started = time.monotonic()
        log = self._inner.log
        before = len(log)
        self._inner.on_inbound(frame, ts_ms)
        for event in log[before:]:
            if type(event).__name__ == "CustomerSaid":
                self._decided = (started, event.decision_ms - event.last_voice_ms)

    def remote_hangup(self, ts_ms: int) -> None:
        try:
            self._inner.remote_hangup(ts_ms)
        finally:
            self._save()

    def local_hangup(self, ts_ms: int, outcome: str) -> None:
        try:
            self._inner.local_hangup(ts_ms, outcome)
        finally:
            self._save()

    def _save(self) -> None:
        # the port is unlinked by now (DISCONNECTED), so the clock thread appends no more
        if not self._saved:
            self._saved = True
            self._path.write_bytes(self._ticks.tobytes())
            self._path.with_suffix(".turns.json").write_text(json.dumps(self._turns))


@dataclass
class TimedSessions:
    """Wraps a session factory (e.g. ``BotSessions``); picklable when the inner one is."""

    inner: object
    ticks_dir: Path

    def prepare(self) -> None:
        prepare = getattr(self.inner, "prepare", None)
        if prepare is not None:
            prepare()

    def __call__(self, attempt_id: str, fmt: AudioFormat, contact: dict[str, str]) -> TimedSession:
        return TimedSession(self.inner(attempt_id, fmt, contact), self.ticks_dir / f"{attempt_id}.ticks")


def read_turns(ticks_dir: Path) -> list[dict]:
    """Every timed turn of every call that ended."""
    turns: list[dict] = []
    for path in sorted(ticks_dir.glob("*.turns.json")):
        turns += json.loads(path.read_text())
    return turns


def read_ticks(ticks_dir: Path) -> dict[str, array]:
    """attempt id → tick times of every call that ended."""
    out = {}
    for path in sorted(ticks_dir.glob("*.ticks")):
        ticks = array("d")
        ticks.frombytes(path.read_bytes())
        out[path.stem] = ticks
    return out
