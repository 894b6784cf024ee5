"""The manager's side of calls over the broker: `voicebot run --workers remote`.

``RemoteWorkers`` has the local ``WorkerPool``'s interface (``dial``,
``hangup``, ``free_slots``, ``next_event``, ``close``), so the campaign run
does not know where its calls are made. Workers (`voicebot worker`) are
known from their heartbeats; a call goes to the live worker running the same
dialplan with the most free capacity, on that worker's job topic.

A worker is lost when the broker publishes its last will (its process died or
its connection dropped: at once for a killed process), when it comes back as a
new incarnation, or when no heartbeat came for ``LOST_AFTER_S`` while the
manager itself was connected. Every call it carried then ends as
``worker_lost`` (retried by the dialplan's policy). If a lost worker comes back
still carrying calls the manager has given up on, they are hung up: the
contact will be called again, never twice at once.

The manager's MQTT session is persistent (a fixed client id, clean session
off), so workers' events published while it reconnects wait at the broker.
Each Ended carries the call's JSON record, written here to ``calls_dir`` like
a local worker's, so the run reads it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import aiomqtt
import structlog

from voicebot.bus.broker import BrokerError, BrokerLink, BrokerSettings, run_together
from voicebot.bus.jobs import (
    JOB_TTL_S,
    LOST_AFTER_S,
    JobMessageError,
    WorkerStatus,
    decode_event,
    decode_status,
    encode_job,
    worker_of,
    worker_topic,
    workers_filter,
)
from voicebot.calls import outcomes
from voicebot.calls.messages import Answered, Dial, DialFailed, Ended, HandoffRequested, Hangup
from voicebot.calls.placer import NoCapacity, PlacerEvent
from voicebot.errors import SipError

_log = structlog.get_logger("voicebot.dispatch")
_ACK_TIMEOUT_S = JOB_TTL_S + 5.0  # a Dial with no word from its worker by then was lost on the way


@dataclass(eq=False)
class _Job:
    attempt_id: str
    sent_at: float  # monotonic
    acked: bool = False
    answered_at: float | None = None
    setup_ms: int | None = None


@dataclass(eq=False)
class _RemoteWorker:
    name: str
    serial: int  # the int the store keeps as the attempt's worker id
    incarnation: str = ""
    capacity: int = 0
    last_seen: float = 0.0
    live: bool = False
    host: str = ""
    pid: int | None = None
    jobs: dict[str, _Job] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self.jobs)) if self.live else 0


class RemoteWorkers:
    def __init__(self, campaign: str, broker: BrokerSettings, dialplan_sha256: str, concurrency: int,
                 calls_dir: Path, lost_after_s: float = LOST_AFTER_S) -> None:
        self.campaign = campaign
        self.broker = broker
        self.digest = dialplan_sha256
        self.concurrency = concurrency
        self.calls_dir = calls_dir
        self.lost_after_s = lost_after_s
        self.link = BrokerLink(broker, "dispatch")
        self._lock = threading.Lock()
        self._workers: dict[str, _RemoteWorker] = {}
        self._where: dict[str, _RemoteWorker] = {}  # attempt id -> worker, while in flight
        self._dialled: set[str] = set()
        self._mismatched: set[str] = set()  # workers on another dialplan (warned once)
        self._events: queue.SimpleQueue[PlacerEvent] = queue.SimpleQueue()
        self._outgoing: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="dispatch", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def wait_for_workers(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.workers:
                return True
            time.sleep(0.05)
        return bool(self.workers)

    # -- the pool's interface ------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        with self._lock:
            return sum(w.live for w in self._workers.values())

    @property
    def free_slots(self) -> int:
        with self._lock:
            return self._free_locked()

    @property
    def capacity(self) -> int:
        with self._lock:
            return sum(w.capacity for w in self._workers.values() if w.live)

    def live_workers(self) -> dict[str, dict]:
        with self._lock:
            return {w.name: {"serial": w.serial, "host": w.host, "pid": w.pid, "capacity": w.capacity, "calls": len(w.jobs)}
                    for w in self._workers.values() if w.live}

    def dial(self, attempt_id: str, number: str, contact: tuple[tuple[str, str], ...] = ()) -> int:
        with self._lock:
            if self._closing.is_set():
                raise SipError("the dispatcher is closed", code="sip-pool-closed")
            if attempt_id in self._dialled:
                raise SipError(f"attempt {attempt_id} was already handed out", code="duplicate-attempt")
            if self._free_locked() <= 0:
                raise NoCapacity(f"no free call slot for attempt {attempt_id}: {len(self._where)} calls in flight, "
                                 f"{sum(w.live for w in self._workers.values())} workers live")
            worker = max((w for w in self._workers.values() if w.live), key=lambda w: w.free)
            self._dialled.add(attempt_id)
            worker.jobs[attempt_id] = _Job(attempt_id, time.monotonic())
            self._where[attempt_id] = worker
            self._send(worker.name, Dial(attempt_id, number, contact))
            return worker.serial

    def hangup(self, attempt_id: str) -> None:
        with self._lock:
            worker = self._where.get(attempt_id)
            if worker is not None:
                self._send(worker.name, Hangup(attempt_id))

    def next_event(self, timeout_s: float) -> PlacerEvent | None:
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closing.set()
        self._thread.join(10.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the broker thread ------------------------------------------------------------------------

    def _send(self, worker: str, job: Dial | Hangup) -> None:
        self._outgoing.put((worker_topic(self.campaign, worker, "jobs"), encode_job(job)))

    async def _run(self) -> None:
        pending: list[tuple[str, bytes]] = []  # taken from the queue, not yet acknowledged by the broker

        async def serve(client: aiomqtt.Client) -> None:
            await client.subscribe(workers_filter(self.campaign, "status"), qos=1)
            await client.subscribe(workers_filter(self.campaign, "events"), qos=1)
            await run_together([self._receive(client), self._send_jobs(client, pending)], self._closing.is_set,
                               every=self._check_heartbeats)

        # persistent session: what workers publish while we reconnect waits at the broker
        await self.link.serve(f"voicebot-manager-{self.campaign}", serve, self._closing.is_set, clean_session=False)

    async def _send_jobs(self, client: aiomqtt.Client, pending: list[tuple[str, bytes]]) -> None:
        while True:
            while True:
                try:
                    pending.append(self._outgoing.get_nowait())
                except queue.Empty:
                    break
            while pending:
                topic, payload = pending[0]
                await client.publish(topic, payload, qos=1)
                pending.pop(0)
            await asyncio.sleep(0.01)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            try:
                if topic.endswith("/status"):
                    self._on_status(decode_status(topic, message.payload))
                elif topic.endswith("/events"):
                    event, record = decode_event(topic, message.payload)
                    self._on_event(worker_of(topic), event, record)
            except JobMessageError as e:
                _log.warning("bad_worker_message", error=str(e))

    # -- what workers say (broker thread) --------------------------------------------------------------

    def _on_status(self, status: WorkerStatus) -> None:
        with self._lock:
            w = self._workers.get(status.worker)
            if status.state == "up" and status.dialplan_sha256 != self.digest:
                if status.worker not in self._mismatched:
                    self._mismatched.add(status.worker)
                    _log.warning("worker_on_another_dialplan", worker=status.worker, host=status.host,
                                 why="its dialplan file differs from the manager's: it gets no calls until they match")
                return
            if w is None:
                if status.state != "up":
                    return
                w = self._workers[status.worker] = _RemoteWorker(status.worker, len(self._workers) + 1)
            if status.state != "up":
                if w.live and status.incarnation in ("", w.incarnation):  # an old incarnation's will says nothing of this one
                    self._lose_locked(w, f"worker {w.name} {'said goodbye' if status.state == 'down' else 'lost its broker connection (last will)'}")
                return
            if w.live and w.incarnation and status.incarnation != w.incarnation:
                self._lose_locked(w, f"worker {w.name} restarted")
            if not w.live:
                _log.info("worker_joined", worker=w.name, host=status.host, pid=status.pid, capacity=status.capacity)
            w.live, w.incarnation, w.capacity = True, status.incarnation, status.capacity
            w.last_seen, w.host, w.pid = time.monotonic(), status.host, status.pid
            for attempt_id in set(status.calls) - w.jobs.keys():
                # a call we gave up on (worker_lost, now retried) must not go on beside its retry
                self._send(w.name, Hangup(attempt_id))

    def _on_event(self, worker_name: str, event: object, record: dict | None) -> None:
        with self._lock:
            attempt_id = getattr(event, "attempt_id", "")
            w = self._where.get(attempt_id)
            if w is None or w.name != worker_name:
                return  # a late word on a call already given up (worker_lost), or not ours
            job = w.jobs[attempt_id]
            job.acked = True
            if isinstance(event, Answered):
                job.answered_at, job.setup_ms = time.monotonic(), event.setup_ms
            elif isinstance(event, (Ended, DialFailed)):
                if isinstance(event, Ended) and record is not None:
                    self._write_record(attempt_id, record)
                self._forget_locked(w, attempt_id)
            elif isinstance(event, HandoffRequested):
                _log.info("handoff_requested", attempt_id=attempt_id, worker=w.name, **event.context)
            self._put(w, event)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        if self.link.since is None or now - self.link.since < self.lost_after_s:
            return  # just (re)connected: heartbeats have not had time to arrive
        with self._lock:
            for w in self._workers.values():
                if w.live and now - w.last_seen > self.lost_after_s:
                    self._lose_locked(w, f"worker {w.name}: no heartbeat for {now - w.last_seen:.1f} s")
                for job in [j for j in w.jobs.values() if not j.acked and now - j.sent_at > _ACK_TIMEOUT_S]:
                    self._send(w.name, Hangup(job.attempt_id))
                    self._forget_locked(w, job.attempt_id)
                    self._put(w, DialFailed(job.attempt_id, "job-lost", f"worker {w.name} never acknowledged the job"))

    # -- helpers (caller holds _lock) -----------------------------------------------------------------

    def _lose_locked(self, w: _RemoteWorker, reason: str) -> None:
        w.live = False
        _log.warning("worker_lost", worker=w.name, host=w.host, calls=len(w.jobs), why=reason)
        now = time.monotonic()
        for attempt_id, job in list(w.jobs.items()):
            self._forget_locked(w, attempt_id)
            # even a job it never acknowledged may have left as a call just before it died: worker_lost, not not_dialled
            talk_ms = round((now - job.answered_at) * 1000) if job.answered_at is not None else 0
            setup_ms = job.setup_ms if job.setup_ms is not None else round((now - job.sent_at) * 1000)
            self._put(w, Ended(attempt_id=attempt_id, outcome=outcomes.WORKER_LOST, sip_code=None, reason=reason,
                               setup_ms=setup_ms, talk_ms=talk_ms, session_outcome=None, hangup_by="local",
                               frames_in=0, frames_out=0, callback_errors=0))

    def _forget_locked(self, w: _RemoteWorker, attempt_id: str) -> None:
        w.jobs.pop(attempt_id, None)
        self._where.pop(attempt_id, None)

    def _free_locked(self) -> int:
        return max(0, min(self.concurrency - len(self._where), sum(w.free for w in self._workers.values())))

    def _put(self, w: _RemoteWorker, event: object) -> None:
        self._events.put(PlacerEvent(w.serial, w.pid, time.monotonic(), event))

    def _write_record(self, attempt_id: str, record: dict) -> None:
        with contextlib.suppress(OSError):
            self.calls_dir.mkdir(parents=True, exist_ok=True)
            (self.calls_dir / f"{attempt_id}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")


def need_remote_broker(broker: str | None) -> BrokerSettings:
    if not broker:
        raise BrokerError("--workers remote needs --broker mqtt://host that the workers connect to as well", code="broker-url")
    return BrokerSettings.from_url(broker)
