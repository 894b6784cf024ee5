"""A pool of media workers: enough processes for a campaign's concurrency, one stream of events.

- It starts ``ceil(concurrency / K)`` ``WorkerProcess``es, K being the customer
  calls each worker takes at once (its ``Ready.max_calls``: what its pjsua build
  takes, less one kept for an operator leg when the dialplan bridges handoffs;
  a worker's ``Capacity`` lowers it while bridges hold operator legs).
- It is a ``CallPlacer`` (``voicebot/calls/placer.py``): ``dial()`` takes a
  slot in the ledger it shares with the remote dispatcher (the live worker with
  the most free slots, never above K on any worker nor above the pool's
  concurrency; ``NoCapacity`` when every slot is taken: nothing reaches pjsua2).
- Call set-ups are paced per worker by a token bucket: one pjsua process aborts
  above ~60 set-ups a second (DESIGN.md), so the rate is capped well under it.
- One reader thread per worker moves its events, in order, onto one queue that
  ``next_event()`` reads, each wrapped in a ``PlacerEvent`` naming the worker.
  Besides the calls' events it carries each worker's ``Ready`` (also a
  replacement's) and a ``WorkerFailed`` for every replacement that could not start. The same thread notices when its worker process dies
  (within ``_POLL_S``), has the ledger report every call the worker still
  carried as an ``Ended`` with outcome ``worker_lost`` and starts a replacement.

Threads: the caller's (``dial``/``hangup``/``next_event``/``close``), one pacer
that sends queued ``Dial``s when their worker's bucket allows, and one reader
per worker slot. Every piece of shared state is guarded by ``_lock``.
"""

from __future__ import annotations

import math
import multiprocessing.connection
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import structlog

from voicebot.calls.messages import (
    Capacity,
    Dial,
    DialFailed,
    Hangup,
    Ready,
    Stop,
    Stopped,
    WorkerEvent,
    WorkerFailed,
)
from voicebot.calls.placer import LedgerPlacer, TokenBucket
from voicebot.errors import ConfigError, SipError
from voicebot.telephony.host import ModelHost
from voicebot.telephony.worker import WorkerProcess, WorkerSettings

# One pjsua process aborts above ~60 set-ups a second (assertion in ioqueue_select.c).
MAX_SETUPS_PER_SECOND_PER_WORKER = 40.0
_POLL_S = 0.1  # reader's wait for an event before it checks its worker is alive
_DRAIN_S = 0.05  # after a death: wait for events still in the pipe
_START_TIMEOUT_S = 30.0
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

_log = structlog.get_logger("voicebot.pool")


class WorkerStartError(SipError):
    """A media worker reported ``WorkerFailed`` or no ``Ready`` in time."""

    code = "sip-worker-start"


@dataclass(eq=False)
class _Slot:
    """One place for a worker; its process is replaced when it dies."""

    index: int
    bucket: TokenBucket
    worker: WorkerProcess | None = None
    pending: deque[Dial] = field(default_factory=deque)
    reader: threading.Thread | None = None


class WorkerPool(LedgerPlacer[int]):
    """Media workers for one campaign. Use as a context manager, or call ``close()``."""

    def __init__(
        self, settings: WorkerSettings, concurrency: int, setups_per_second_per_worker: float = 20.0, share_models: bool | None = None
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1 (got {concurrency})")
        if not 0 < setups_per_second_per_worker <= MAX_SETUPS_PER_SECOND_PER_WORKER:
            raise ConfigError(
                f"setups_per_second_per_worker must be in (0, {MAX_SETUPS_PER_SECOND_PER_WORKER}] "
                f"(got {setups_per_second_per_worker}): one pjsua process aborts above ~60 set-ups a second"
            )
        super().__init__(concurrency)
        self.settings = settings
        self.setups_per_second_per_worker = setups_per_second_per_worker
        self._slots: list[_Slot] = []  # the ledger names each slot's worker by the slot's index
        self._next_worker_id = 0
        self._closed = False
        self.start_seconds: list[float] = []  # how long each worker took from spawn to Ready
        self._pacer = threading.Thread(target=self._pace, name="pool-pacer", daemon=True)
        # sessions with models (a prepare()) get them once, in a model host that forks the workers
        if share_models is None:
            share_models = hasattr(settings.session_factory, "prepare")
        self.host: ModelHost | None = None
        try:
            if share_models:
                self.host = ModelHost(settings).start()
            first = self._new_slot()
            self._start_into(first)  # K is only known once a worker reports it
            n = math.ceil(concurrency / self.ledger.workers[first.index].capacity)
            others = [self._new_slot() for _ in range(n - 1)]
            self._start_all(others)
        except BaseException:
            self.close()
            raise
        for slot in self._slots:
            self._start_reader(slot)
        self._pacer.start()

    # -- the manager's side ----------------------------------------------------------------------

    @property
    def workers(self) -> int:
        return len(self._slots)  # a slot whose worker is being replaced still counts

    def pids(self) -> dict[int, int | None]:
        """worker id -> pid of every live worker."""
        with self._lock:
            return {w.serial: w.pid for w in self.ledger.workers.values() if w.live}

    def dial(self, attempt_id: str, number: str, contact: tuple[tuple[str, str], ...] = (), keys_after_answer: str = "") -> int:
        """Accept a call for the least loaded live worker and return that worker's id.

        The ``Dial`` reaches the worker when its set-up pacing allows. Raises
        ``NoCapacity`` when no slot is free, ``SipError`` (``duplicate-attempt``)
        for an attempt this pool already took, ``SipError`` (``sip-pool-closed``) after ``close()``.
        """
        with self._lock:
            w = self.ledger.place(attempt_id, closed=self._closing.is_set())
            self._slots[w.key].pending.append(Dial(attempt_id, number, contact, keys_after_answer))
            self._lock.notify_all()
            return w.serial

    def hangup(self, attempt_id: str) -> None:
        """Hang up (or cancel) a call; a call still queued in the pool ends at once as ``DialFailed`` ``pool-cancelled``."""
        with self._lock:
            w, call = self.ledger.where(attempt_id), self.ledger.track(attempt_id)
            if w is None or call is None:
                return
            slot = self._slots[w.key]
            if call.sent_at is not None:
                assert slot.worker is not None
                slot.worker.send(Hangup(attempt_id))
                return
            slot.pending = deque(d for d in slot.pending if d.attempt_id != attempt_id)
            self.ledger.forget(attempt_id)
            self.ledger.emit(slot.index, DialFailed(attempt_id, "pool-cancelled", "hung up before it was dialled"))

    def close(self, timeout_s: float = 10.0) -> dict[int, int | None]:
        """Stop every worker (they hang up their calls), kill any still alive after ``timeout_s``; worker id -> exit code.

        Only a worker's reader thread reaps its process (two threads in
        ``waitpid`` on one child lose its exit code), so this waits on sentinels.
        """
        with self._lock:
            if self._closed:
                return {}
            self._closed = True
            self._closing.set()
            self._lock.notify_all()
            slots = [(s, self.ledger.workers[s.index].serial, s.worker) for s in self._slots if s.worker is not None]
        slots = [(s, i, w) for s, i, w in slots if w.process.pid is not None]  # a starter stops any it spawns from now on
        for _, _, w in slots:
            w.send(Stop())  # a dead worker's queue takes it harmlessly
        deadline = time.monotonic() + timeout_s
        running = {w.process.sentinel: w for _, _, w in slots}
        while running and (left := deadline - time.monotonic()) > 0:
            for sentinel in multiprocessing.connection.wait(list(running), left):
                del running[sentinel]
        for w in running.values():
            w.process.kill()  # still unreaped, so its pid is still its own
        for slot, _, w in slots:
            if slot.reader is not None and slot.reader is not threading.current_thread():
                slot.reader.join(_POLL_S + _DRAIN_S + 5.0)  # it reaps the process, reports calls a kill lost
            else:
                w.process.join(5.0)
        if self._pacer.is_alive():
            self._pacer.join(2.0)
        codes = {worker_id: w.process.exitcode for _, worker_id, w in slots}
        if self.host is not None:
            self.host.close()
        return codes

    # -- starting workers -------------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        slot = _Slot(len(self._slots), TokenBucket(self.setups_per_second_per_worker))
        self._slots.append(slot)
        return slot

    def _start_all(self, slots: list[_Slot]) -> None:
        errors: list[BaseException] = []

        def start(slot: _Slot) -> None:
            try:
                self._start_into(slot)
            except Exception as e:  # noqa: BLE001  (re-raised on the constructor's thread)
                errors.append(e)

        threads = [threading.Thread(target=start, args=(s,), name=f"pool-start-{s.index}") for s in slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join(_START_TIMEOUT_S + 5)
        if errors:
            raise errors[0]

    def _start_into(self, slot: _Slot) -> None:
        """Spawn a worker for ``slot`` and wait for its Ready; raises ``WorkerStartError``."""
        with self._lock:
            worker_id = self._next_worker_id
            self._next_worker_id += 1
        w = self.host.worker() if self.host is not None else WorkerProcess(self.settings)
        with self._lock:
            if self._closing.is_set():
                return  # close() has taken its list of workers: start none behind its back
            slot.worker = w
            self.ledger.worker(slot.index, worker_id).live = False
        started = time.monotonic()
        try:
            w.launch()
        except SipError as e:
            raise WorkerStartError(f"media worker {worker_id} could not be started: {e}") from None
        with self._lock:
            self.ledger.workers[slot.index].pid = w.process.pid
        event = _first_event(w, _START_TIMEOUT_S)
        if not isinstance(event, Ready):
            _end_process(w)
            if isinstance(event, WorkerFailed):
                raise WorkerStartError(f"media worker {worker_id} failed to start: {event.code}: {event.message}", code=event.code)
            if event is None and w.process.exitcode is not None:
                raise WorkerStartError(f"media worker {worker_id} exited with code {w.process.exitcode} before it was ready")
            raise WorkerStartError(f"media worker {worker_id} sent no Ready within {_START_TIMEOUT_S} s (got {event!r})")
        if event.max_calls < 1:
            _end_process(w)
            raise WorkerStartError(f"media worker {worker_id} takes no calls (max_calls {event.max_calls})")
        with self._lock:
            self.start_seconds.append(time.monotonic() - started)
            slot.bucket = TokenBucket(self.setups_per_second_per_worker)
            closing = self._closing.is_set()
            self.ledger.up(slot.index, event.max_calls, live=not closing)
            self.ledger.emit(slot.index, event)
            self._lock.notify_all()
        if closing:  # close() may have looked before this process existed
            w.stop(timeout_s=5.0)

    def _start_reader(self, slot: _Slot) -> None:
        slot.reader = threading.Thread(target=self._read, args=(slot,), name=f"pool-reader-{slot.index}", daemon=True)
        slot.reader.start()

    # -- one thread per slot: events in, deaths noticed, replacements started ---------------------

    def _read(self, slot: _Slot) -> None:
        failures = 0
        while True:
            self._pump(slot)
            while not self._closing.is_set():
                try:
                    self._start_into(slot)
                    failures = 0
                    break
                except WorkerStartError as e:
                    with self._lock:
                        self.ledger.emit(slot.index, WorkerFailed(e.code, str(e)))
                    self._closing.wait(_RESTART_BACKOFF_S[min(failures, len(_RESTART_BACKOFF_S) - 1)])
                    failures += 1
            if self._closing.is_set():
                return

    def _pump(self, slot: _Slot) -> None:
        """Forward the current worker's events until it stops or dies, then report the calls it still had."""
        w = slot.worker
        assert w is not None
        while True:
            try:
                event = w.events.get(timeout=_POLL_S)
            except queue.Empty:
                if w.process.is_alive():
                    continue
                break  # died (or was killed at close): whatever is still in the pipe comes first
            self._take(slot, event)
            if isinstance(event, Stopped):
                w.process.join(5.0)
                break
        while True:
            try:
                self._take(slot, w.events.get(timeout=_DRAIN_S))
            except queue.Empty:
                break
        w.process.join(1.0)
        self._lose_calls(slot, w.process.exitcode)

    def _take(self, slot: _Slot, received: object) -> None:
        event = cast(WorkerEvent, received)  # a worker's pipe carries only its events
        with self._lock:
            if isinstance(event, Capacity):  # the pool's own business: placement reads it, nobody else
                self.ledger.workers[slot.index].capacity = event.max_calls
                self._lock.notify_all()
                return
            self.ledger.observe(slot.index, event)

    def _lose_calls(self, slot: _Slot, exit_code: int | None) -> None:
        """The worker is gone: the ledger ends every call it carried; queued ones were never dialled."""
        with self._lock:
            queued = frozenset(d.attempt_id for d in slot.pending)
            slot.pending.clear()
            self.ledger.lose(slot.index, f"worker process died (exit code {exit_code})", never_sent=queued)

    # -- the pacer ----------------------------------------------------------------------------------

    def _pace(self) -> None:
        with self._lock:
            while not self._closing.is_set():
                wait_s = None
                now = time.monotonic()
                for slot in self._slots:
                    while self.ledger.workers[slot.index].live and slot.pending:
                        due_in = slot.bucket.take(now)
                        if due_in > 0:
                            wait_s = due_in if wait_s is None else min(wait_s, due_in)
                            break
                        dial = slot.pending.popleft()
                        call = self.ledger.track(dial.attempt_id)
                        assert call is not None and slot.worker is not None
                        call.sent_at = now
                        slot.worker.send(dial)
                self._lock.wait(wait_s)


def _first_event(w: WorkerProcess, timeout_s: float) -> WorkerEvent | None:
    """The worker's first event, or None if it exits or says nothing within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return cast(WorkerEvent, w.events.get(timeout=_POLL_S))
        except queue.Empty:
            if not w.process.is_alive():
                try:
                    return cast(WorkerEvent, w.events.get(timeout=_DRAIN_S))  # its last words may still be in the pipe
                except queue.Empty:
                    return None
    return None


def _end_process(w: WorkerProcess | None) -> None:
    if w is None:
        return
    if w.process.is_alive():
        w.process.kill()
    if w.process.pid is not None:
        w.process.join(5.0)
