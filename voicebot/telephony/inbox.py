"""The inbox of a media worker's session thread: typed messages, control ahead of audio, audio bounded.

One thread runs every call's session (all but ``next_outbound``, which the media
clock calls). What it is told comes in two kinds:

- control (start, a DTMF key, a hang-up, a transfer's result, close): few, and
  each one changes what the call does next, so it goes ahead of any audio
  waiting, in the order it was posted;
- audio (``Inbound``, 50 frames a second per call from the clock thread): kept
  per call, at most ``audio_frames_per_call``; when a call's backlog is full its
  oldest frame is dropped (and counted), never the clock thread blocked. Calls
  take turns, one frame each, so one busy call does not starve the others.

A call's audio still waiting when its ``Close`` is taken is dropped: the session
has seen its last event. Pure Python, no pjsua2: tested on its own.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Start:
    ts_ms: int


@dataclass(frozen=True)
class Inbound:
    frame: bytes
    ts_ms: int


@dataclass(frozen=True)
class Dtmf:
    digit: str
    ts_ms: int


@dataclass(frozen=True)
class RemoteHangup:
    ts_ms: int


@dataclass(frozen=True)
class LocalHangup:
    ts_ms: int
    outcome: str


@dataclass(frozen=True)
class TransferResult:
    ok: bool
    ts_ms: int
    reason: str = ""


@dataclass(frozen=True)
class Close:
    """The session has been told everything; the thread reports it closed."""


SessionMessage = Start | Inbound | Dtmf | RemoteHangup | LocalHangup | TransferResult | Close

# 3 s of 20 ms frames: a recogniser's final decode on this thread may take a second; more than that
# behind and the caller's words are stale anyway.
AUDIO_FRAMES_PER_CALL = 150
_CLOSED_KEPT = 1024  # a closed call's late frames come within a tick or two: a long-lived worker forgets older ones


class InboxSession(Protocol):
    def start(self, ts_ms: int = 0) -> None: ...

    def on_inbound(self, frame: bytes, ts_ms: int) -> None: ...

    def dtmf(self, digit: str, ts_ms: int) -> None: ...

    def remote_hangup(self, ts_ms: int) -> None: ...

    def local_hangup(self, ts_ms: int, outcome: str) -> None: ...


def deliver(session: InboxSession, message: SessionMessage) -> None:
    """Tell ``session`` one message (``Close`` is the thread's own business)."""
    match message:
        case Inbound(frame, ts_ms):
            session.on_inbound(frame, ts_ms)
        case Start(ts_ms):
            session.start(ts_ms)
        case Dtmf(digit, ts_ms):
            session.dtmf(digit, ts_ms)
        case RemoteHangup(ts_ms):
            session.remote_hangup(ts_ms)
        case LocalHangup(ts_ms, outcome):
            session.local_hangup(ts_ms, outcome)
        case TransferResult(ok, ts_ms, reason):
            session.transfer_result(ok, ts_ms, reason)  # type: ignore[attr-defined]  # only sessions that hand calls over get one
        case Close():
            pass


class SessionInbox:
    """Many producers (the SIP thread, the clock thread, pjmedia's DTMF thread), one consumer."""

    def __init__(self, audio_frames_per_call: int = AUDIO_FRAMES_PER_CALL) -> None:
        if audio_frames_per_call < 1:
            raise ValueError(f"audio_frames_per_call must be at least 1 (got {audio_frames_per_call})")
        self.audio_frames_per_call = audio_frames_per_call
        self._cond = threading.Condition()
        self._control: deque[tuple[str, object, SessionMessage]] = deque()
        self._audio: dict[str, deque[tuple[object, Inbound]]] = {}
        self._turns: deque[str] = deque()  # calls with audio waiting, in turn order
        self._closed: set[str] = set()  # calls whose Close was taken: a frame still on its way is dropped
        self._closed_order: deque[str] = deque()  # ... remembered for the last _CLOSED_KEPT calls only
        self.dropped: dict[str, int] = {}  # per open call: frames dropped because its backlog was full
        self._shut = False

    def put(self, attempt_id: str, session: object, message: SessionMessage) -> None:
        """Never blocks: control is queued, audio is queued or (backlog full) pushes out the call's oldest frame."""
        with self._cond:
            if isinstance(message, Inbound):
                if attempt_id in self._closed:
                    return
                frames = self._audio.get(attempt_id)
                if frames is None:
                    frames = self._audio[attempt_id] = deque(maxlen=self.audio_frames_per_call)
                if not frames:
                    self._turns.append(attempt_id)
                elif len(frames) == self.audio_frames_per_call:
                    self.dropped[attempt_id] = self.dropped.get(attempt_id, 0) + 1
                frames.append((session, message))
            else:
                self._control.append((attempt_id, session, message))
            self._cond.notify()

    def get(self, timeout_s: float | None = None) -> tuple[str, object, SessionMessage] | None:
        """The next message: any control first, then one frame of the next call's audio. None once shut and
        empty of control (audio left behind is not worth telling), or after ``timeout_s``."""
        with self._cond:
            while True:
                if self._control:
                    attempt_id, session, message = self._control.popleft()
                    if isinstance(message, Close):
                        self._close(attempt_id)
                    return attempt_id, session, message
                if self._shut:
                    return None
                while self._turns:
                    attempt_id = self._turns.popleft()
                    frames = self._audio.get(attempt_id)
                    if not frames:
                        continue  # closed meanwhile
                    session, inbound = frames.popleft()
                    if frames:
                        self._turns.append(attempt_id)
                    return attempt_id, session, inbound
                if not self._cond.wait(timeout_s):
                    return None

    def take_dropped(self, attempt_id: str) -> int:
        """Frames of this call dropped so far (its backlog was full); the count starts again at 0."""
        with self._cond:
            return self.dropped.pop(attempt_id, 0)

    def _close(self, attempt_id: str) -> None:
        self._audio.pop(attempt_id, None)  # the session has seen its last event: what it had not heard is moot
        self._closed.add(attempt_id)
        self._closed_order.append(attempt_id)
        if len(self._closed_order) > _CLOSED_KEPT:
            self._closed.discard(self._closed_order.popleft())

    def shut(self) -> None:
        """Wake the consumer: it takes the control still queued, then ``get`` returns None."""
        with self._cond:
            self._shut = True
            self._cond.notify_all()
