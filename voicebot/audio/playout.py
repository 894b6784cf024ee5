"""What the bot plays: a queue of prompts read one 20 ms frame per media tick.

Three verbs and one event (as LiveKit's audio output): ``play`` queues a prompt,
``pause``/``resume`` hold it in place (a possible interruption being confirmed),
``clear`` drops everything now (barge-in), and each prompt ends with a
``PlaybackFinished`` saying how much was heard and whether it was cut off.
The media clock calls ``read_frame`` from its own thread, so every method holds
a lock for a few microseconds and never does more than slice bytes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from voicebot.audio.frames import AudioFormat


@dataclass(frozen=True)
class PlaybackStarted:
    prompt_id: str
    ts_ms: int


@dataclass(frozen=True)
class PlaybackFinished:
    prompt_id: str
    played_ms: int
    total_ms: int
    interrupted: bool
    ts_ms: int


PlaybackEvent = PlaybackStarted | PlaybackFinished


@dataclass
class _Prompt:
    prompt_id: str
    pcm: bytes
    pos: int = 0
    started: bool = False


class Playout:
    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._queue: deque[_Prompt] = deque()
        self._paused = False
        self._lock = threading.Lock()
        self._events: list[PlaybackEvent] = []
        self._silence = fmt.silence()

    # -- control (session side) ----------------------------------------------------------

    def play(self, prompt_id: str, pcm: bytes) -> None:
        with self._lock:
            self._queue.append(_Prompt(prompt_id, pcm))

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def clear(self, ts_ms: int) -> list[PlaybackFinished]:
        """Drop every queued prompt now; each is reported as interrupted (queued ones with 0 ms heard)."""
        with self._lock:
            dropped = [self._finish(p, True, ts_ms) for p in self._queue]
            self._queue.clear()
            self._paused = False
            return dropped

    @property
    def active(self) -> bool:
        """Something is queued (playing or paused)."""
        with self._lock:
            return bool(self._queue)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def current(self) -> tuple[str, int, int] | None:
        """(prompt id, played ms, total ms) of the prompt at the head of the queue."""
        with self._lock:
            if not self._queue:
                return None
            p = self._queue[0]
            return p.prompt_id, self.fmt.ms(p.pos), self.fmt.ms(len(p.pcm))

    @property
    def last_queued(self) -> str | None:
        """The id of the prompt that will finish last (None when nothing is queued)."""
        with self._lock:
            return self._queue[-1].prompt_id if self._queue else None

    def remaining_ms(self) -> int:
        with self._lock:
            return sum(self.fmt.ms(len(p.pcm) - p.pos) for p in self._queue)

    def take_events(self) -> list[PlaybackEvent]:
        with self._lock:
            events, self._events = self._events, []
            return events

    # -- the media tick -----------------------------------------------------------------------

    def read_frame(self, ts_ms: int) -> bytes:
        """The next frame to send: prompt audio, or silence when idle or paused."""
        with self._lock:
            if self._paused or not self._queue:
                return self._silence
            p = self._queue[0]
            if not p.started:
                p.started = True
                self._events.append(PlaybackStarted(p.prompt_id, ts_ms))
            n = self.fmt.bytes_per_frame
            frame = p.pcm[p.pos : p.pos + n]
            p.pos += n
            if p.pos >= len(p.pcm):
                self._queue.popleft()
                self._events.append(self._finish(p, False, ts_ms + self.fmt.frame_ms))
            return frame if len(frame) == n else frame + bytes(n - len(frame))

    def _finish(self, p: _Prompt, interrupted: bool, ts_ms: int) -> PlaybackFinished:
        played = min(p.pos, len(p.pcm))
        return PlaybackFinished(p.prompt_id, self.fmt.ms(played), self.fmt.ms(len(p.pcm)), interrupted, ts_ms)
