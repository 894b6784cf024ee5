"""Placing calls, whoever makes them: the ``CallPlacer`` protocol and the one slot ledger behind it.

The campaign run only sees a ``CallPlacer``: the local pool of media workers
(``telephony/pool.py``) and the dispatcher to workers over the broker
(``bus/dispatch.py``) both are one. What the two have in common lives here, once:

- ``SlotLedger``: which worker carries which attempt, each worker's capacity,
  the free-slot arithmetic (never above a worker's capacity nor the placer's
  concurrency), the dial guards (closed, an attempt dialled twice, no capacity),
  the bookkeeping a worker's events drive (answered, ended) and what a lost
  worker leaves behind (every call it carried ends as ``worker_lost``);
- ``LedgerPlacer``: the placer's side of the ledger (capacity, free slots,
  concurrency, the event stream, ``dial``'s guards), which both subclass.

Nothing here touches pjsua2 or MQTT: importing the remote dispatcher must not
load pjsua2 (a manager host needs no media stack).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, Self, TypeVar

import structlog

from voicebot.calls import outcomes
from voicebot.calls.messages import Answered, DialFailed, Ended, HandoffRequested, WorkerEvent
from voicebot.errors import SipError

_log = structlog.get_logger("voicebot.placer")

K = TypeVar("K", bound=Hashable)  # how a placer names its workers: the pool by slot index, the dispatcher by name


class NoCapacity(SipError):
    """Every worker slot (or the placer's concurrency) is taken: nothing was dialled; try again after an ``Ended``."""

    code = "sip-no-capacity"


@dataclass(frozen=True)
class PlacerEvent:
    """One worker event as the placer saw it."""

    worker_id: int  # serial of the worker (a replacement or a new incarnation gets a new one)
    pid: int | None
    received_at: float  # time.monotonic() seconds when the placer read it
    event: WorkerEvent


class CallPlacer(Protocol):
    """What a campaign run needs from whoever places its calls."""

    concurrency: int  # calls in flight at most; a run may change it while dialling

    @property
    def workers(self) -> int: ...

    @property
    def capacity(self) -> int:
        """Calls the live workers take at once."""
        ...

    @property
    def free_slots(self) -> int:
        """Calls ``dial()`` would accept right now."""
        ...

    def dial(self, attempt_id: str, number: str, contact: tuple[tuple[str, str], ...] = (), keys_after_answer: str = "") -> int:
        """Hand the call to a worker and return its id; ``NoCapacity`` when no slot is free. ``keys_after_answer``
        (``,`` = a 500 ms pause) are pressed when the far end answers, and the bot speaks after them."""
        ...

    def hangup(self, attempt_id: str) -> None: ...

    def next_event(self, timeout_s: float) -> PlacerEvent | None:
        """The next event of any worker (each call's events in order), or None after ``timeout_s``."""
        ...

    def close(self) -> object: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class TokenBucket:
    """Pure pacing: ``take(now_s)`` returns 0.0 and spends a token, or the seconds to wait for one."""

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs a positive rate and burst (got {rate_per_s}/s, burst {burst})")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now_s: float) -> float:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now_s - self._at) * self.rate_per_s)
        self._at = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


@dataclass(eq=False)
class CallTrack:
    """One call in flight, as far as the placer knows it."""

    attempt_id: str
    accepted_at: float  # monotonic
    sent_at: float | None = None  # None: still queued by the placer, never reached a worker
    acked: bool = False  # the worker has said something about it
    answered_at: float | None = None
    answer_setup_ms: int | None = None


@dataclass(eq=False)
class WorkerSlots(Generic[K]):
    """One worker's share of the ledger."""

    key: K  # how the placer names it (the pool's slot index, a remote worker's name)
    serial: int  # the int the store keeps as the attempt's worker id
    pid: int | None = None
    capacity: int = 0
    live: bool = False
    calls: dict[str, CallTrack] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self.calls)) if self.live else 0


class SlotLedger(Generic[K]):
    """Which worker carries which call, and the events that follow from it.

    Not thread-safe by itself: its placer holds one lock around every call in,
    so the ledger and the placer's own state change together.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.workers: dict[K, WorkerSlots[K]] = {}
        self._where: dict[str, WorkerSlots[K]] = {}  # attempt id -> worker, while the call is in flight
        self._dialled: set[str] = set()  # every attempt id ever accepted: never dial one twice
        self.events: queue.SimpleQueue[PlacerEvent] = queue.SimpleQueue()

    # -- workers ------------------------------------------------------------------------------------

    def worker(self, key: K, serial: int) -> WorkerSlots[K]:
        """The worker named ``key``, added (not live, no capacity) if new; a new ``serial`` renames it."""
        w = self.workers.get(key)
        if w is None:
            w = self.workers[key] = WorkerSlots(key, serial)
        w.serial = serial
        return w

    def up(self, key: K, capacity: int, pid: int | None = None, live: bool = True) -> None:
        w = self.workers[key]
        w.capacity, w.live = capacity, live
        if pid is not None:
            w.pid = pid

    @property
    def live_workers(self) -> int:
        return sum(w.live for w in self.workers.values())

    @property
    def capacity(self) -> int:
        return sum(w.capacity for w in self.workers.values() if w.live)

    @property
    def free(self) -> int:
        return max(0, min(self.concurrency - len(self._where), sum(w.free for w in self.workers.values())))

    @property
    def in_flight(self) -> list[str]:
        return list(self._where)

    # -- calls --------------------------------------------------------------------------------------

    def place(self, attempt_id: str, closed: bool) -> WorkerSlots[K]:
        """Take a slot for ``attempt_id`` on the live worker with the most free; the guards every placer needs."""
        if closed:
            raise SipError("the call placer is closed", code="sip-pool-closed")
        if attempt_id in self._dialled:
            raise SipError(f"attempt {attempt_id} was already dialled by this placer", code="duplicate-attempt")
        if self.free <= 0:
            raise NoCapacity(
                f"no free call slot for attempt {attempt_id}: {len(self._where)} calls in flight, "
                f"concurrency {self.concurrency}, {self.live_workers} of {len(self.workers)} workers live"
            )
        w = max((w for w in self.workers.values() if w.live), key=lambda w: w.free)  # first of the emptiest
        self._dialled.add(attempt_id)
        w.calls[attempt_id] = CallTrack(attempt_id, time.monotonic())
        self._where[attempt_id] = w
        return w

    def where(self, attempt_id: str) -> WorkerSlots[K] | None:
        return self._where.get(attempt_id)

    def track(self, attempt_id: str) -> CallTrack | None:
        w = self._where.get(attempt_id)
        return w.calls.get(attempt_id) if w is not None else None

    def forget(self, attempt_id: str) -> None:
        w = self._where.pop(attempt_id, None)
        if w is not None:
            w.calls.pop(attempt_id, None)

    def observe(self, key: K, event: WorkerEvent, drop_strays: bool = False) -> None:
        """A worker's event: answered and ended calls are booked (the slot is free before anyone reads the
        event), then it goes on the stream. With ``drop_strays`` a word on a call this worker does not carry
        (one already given up as ``worker_lost``) is dropped."""
        w = self.workers[key]
        attempt_id = getattr(event, "attempt_id", None)
        call = w.calls.get(attempt_id) if attempt_id is not None else None
        if call is None and attempt_id is not None and drop_strays:
            return
        if call is not None:
            call.acked = True
            if isinstance(event, Answered):
                call.answered_at, call.answer_setup_ms = time.monotonic(), event.setup_ms
            elif isinstance(event, (Ended, DialFailed)):
                self.forget(call.attempt_id)
            elif isinstance(event, HandoffRequested):
                # what the operator continues from (the bus publishes it)
                _log.info("handoff_requested", attempt_id=event.attempt_id, worker_id=w.serial, **event.context)
        self.emit(key, event)

    def lose(self, key: K, reason: str, never_sent: frozenset[str] = frozenset()) -> int:
        """The worker is gone: each call it carried ends as ``worker_lost`` (retried by the dialplan's policy);
        those in ``never_sent`` never left the placer, so they fail as not dialled. Returns how many calls it had.

        It logs nothing: a pool's worker also "goes" at every orderly stop, and a bench's stdout is JSON."""
        w = self.workers[key]
        carried = len(w.calls)
        w.live = False
        now = time.monotonic()
        for attempt_id, call in list(w.calls.items()):
            self.forget(attempt_id)
            if attempt_id in never_sent:
                self.emit(key, DialFailed(attempt_id, "pool-worker-lost", f"never dialled: {reason}"))
                continue
            # even a call its worker never acknowledged may have left just before it died: worker_lost, not not_dialled
            if call.answered_at is not None:
                setup_ms, talk_ms = call.answer_setup_ms or 0, _ms(now - call.answered_at)
            else:
                setup_ms, talk_ms = _ms(now - (call.sent_at or call.accepted_at)), 0
            lost = Ended(
                attempt_id=attempt_id,
                outcome=outcomes.WORKER_LOST,
                sip_code=None,
                reason=reason,
                setup_ms=setup_ms,
                talk_ms=talk_ms,
                session_outcome=None,
                hangup_by="local",
                frames_in=0,
                frames_out=0,
                callback_errors=0,
            )
            self.emit(key, lost)
        return carried

    def emit(self, key: K, event: WorkerEvent) -> None:
        w = self.workers[key]
        self.events.put(PlacerEvent(w.serial, w.pid, time.monotonic(), event))


class LedgerPlacer(Generic[K]):
    """What the local pool and the remote dispatcher share as ``CallPlacer``s: one ledger under one lock."""

    def __init__(self, concurrency: int) -> None:
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self.ledger: SlotLedger[K] = SlotLedger(concurrency)

    @property
    def concurrency(self) -> int:
        return self.ledger.concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        with self._lock:
            self.ledger.concurrency = value
            self._lock.notify_all()

    @property
    def workers(self) -> int:
        with self._lock:
            return self.ledger.live_workers

    @property
    def free_slots(self) -> int:
        """Calls ``dial()`` would accept right now."""
        with self._lock:
            return self.ledger.free

    @property
    def capacity(self) -> int:
        """Calls the live workers take at once (``concurrency`` may be set lower, never usefully higher)."""
        with self._lock:
            return self.ledger.capacity

    def calls(self) -> list[str]:
        """Attempt ids of the calls in flight (queued, ringing or talking)."""
        with self._lock:
            return self.ledger.in_flight

    def next_event(self, timeout_s: float) -> PlacerEvent | None:
        """The next event of any worker (each call's events in order), or None after ``timeout_s``."""
        try:
            return self.ledger.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> object:
        raise NotImplementedError


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
