"""The manager's side of calls over the broker: `voicebot run --workers remote`.

``RemoteWorkers`` is a ``CallPlacer`` (``voicebot/calls/placer.py``) like the
local ``WorkerPool``, with the same slot ledger, so the campaign run does not
know where its calls are made; importing it loads no pjsua2. Workers (`voicebot worker`) are
known from their heartbeats; a call goes to the live worker running the same
dialplan with the most free capacity, on that worker's job topic.

A worker is lost when the broker publishes its last will (its process died or
its connection dropped: at once for a killed process), when it comes back as a
new incarnation, or when no heartbeat came for ``LOST_AFTER_S`` while the
manager itself was connected. The ledger then ends every call it carried as
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
from dataclasses import dataclass
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
from voicebot.calls.messages import Dial, DialFailed, Ended, Hangup, WorkerEvent
from voicebot.calls.placer import LedgerPlacer

_log = structlog.get_logger("voicebot.dispatch")
_ACK_TIMEOUT_S = JOB_TTL_S + 5.0  # a Dial with no word from its worker by then was lost on the way


@dataclass(eq=False)
class _RemoteWorker:
    """What the heartbeats say of a worker beyond the ledger's slots."""

    name: str
    incarnation: str = ""
    last_seen: float = 0.0
    host: str = ""


class RemoteWorkers(LedgerPlacer[str]):
    def __init__(
        self,
        campaign: str,
        broker: BrokerSettings,
        dialplan_sha256: str,
        concurrency: int,
        calls_dir: Path,
        lost_after_s: float = LOST_AFTER_S,
    ) -> None:
        super().__init__(concurrency)
        self.campaign = campaign
        self.broker = broker
        self.digest = dialplan_sha256
        self.calls_dir = calls_dir
        self.lost_after_s = lost_after_s
        self.link = BrokerLink(broker, "dispatch")
        self._workers: dict[str, _RemoteWorker] = {}  # by name, as the ledger knows them
        self._mismatched: set[str] = set()  # workers on another dialplan (warned once)
        self._outgoing: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
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

    # -- the placer's interface (the rest is LedgerPlacer's) ------------------------------------------

    def live_workers(self) -> dict[str, dict]:
        with self._lock:
            return {
                w.key: {"serial": w.serial, "host": self._workers[w.key].host, "pid": w.pid, "capacity": w.capacity, "calls": len(w.calls)}
                for w in self.ledger.workers.values()
                if w.live
            }

    def dial(self, attempt_id: str, number: str, contact: tuple[tuple[str, str], ...] = (), keys_after_answer: str = "") -> int:
        with self._lock:
            w = self.ledger.place(attempt_id, closed=self._closing.is_set())
            call = w.calls[attempt_id]
            call.sent_at = call.accepted_at  # published at once: the broker queues it for the worker
            self._send(w.key, Dial(attempt_id, number, contact, keys_after_answer))
            return w.serial

    def hangup(self, attempt_id: str) -> None:
        with self._lock:
            w = self.ledger.where(attempt_id)
            if w is not None:
                self._send(w.key, Hangup(attempt_id))

    def close(self) -> None:
        self._closing.set()
        self._thread.join(10.0)

    # -- the broker thread ------------------------------------------------------------------------

    def _send(self, worker: str, job: Dial | Hangup) -> None:
        self._outgoing.put((worker_topic(self.campaign, worker, "jobs"), encode_job(job)))

    async def _run(self) -> None:
        pending: list[tuple[str, bytes]] = []  # taken from the queue, not yet acknowledged by the broker

        async def serve(client: aiomqtt.Client) -> None:
            await client.subscribe(workers_filter(self.campaign, "status"), qos=1)
            await client.subscribe(workers_filter(self.campaign, "events"), qos=1)
            await run_together(
                [self._receive(client), self._send_jobs(client, pending)], self._closing.is_set, every=self._check_heartbeats
            )

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
                    self._on_event(worker_of(topic), decode_event(topic, message.payload))
            except JobMessageError as e:
                _log.warning("bad_worker_message", error=str(e))

    # -- what workers say (broker thread) --------------------------------------------------------------

    def _on_status(self, status: WorkerStatus) -> None:
        with self._lock:
            w = self._workers.get(status.worker)
            if status.state == "up" and status.dialplan_sha256 != self.digest:
                if status.worker not in self._mismatched:
                    self._mismatched.add(status.worker)
                    _log.warning(
                        "worker_on_another_dialplan",
                        worker=status.worker,
                        host=status.host,
                        why="its dialplan file differs from the manager's: it gets no calls until they match",
                    )
                return
            if w is None:
                if status.state != "up":
                    return
                w = self._workers[status.worker] = _RemoteWorker(status.worker)
                self.ledger.worker(status.worker, len(self._workers))
            slots = self.ledger.workers[w.name]
            if status.state != "up":
                if slots.live and status.incarnation in ("", w.incarnation):  # an old incarnation's will says nothing of this one
                    how = "said goodbye" if status.state == "down" else "lost its broker connection (last will)"
                    self._lose(w.name, f"worker {w.name} {how}")
                return
            if slots.live and w.incarnation and status.incarnation != w.incarnation:
                self._lose(w.name, f"worker {w.name} restarted")
            if not slots.live:
                _log.info("worker_joined", worker=w.name, host=status.host, pid=status.pid, capacity=status.capacity)
            self.ledger.up(w.name, status.capacity, pid=status.pid)
            w.incarnation, w.last_seen, w.host = status.incarnation, time.monotonic(), status.host
            for attempt_id in set(status.calls) - slots.calls.keys():
                # a call we gave up on (worker_lost, now retried) must not go on beside its retry
                self._send(w.name, Hangup(attempt_id))

    def _on_event(self, worker_name: str, event: WorkerEvent) -> None:
        with self._lock:
            if worker_name not in self.ledger.workers:
                return  # not ours
            if isinstance(event, Ended) and event.record is not None and event.attempt_id in self.ledger.workers[worker_name].calls:
                self._write_record(event.attempt_id, event.record)  # an optional copy, as a local worker leaves one
            self.ledger.observe(worker_name, event, drop_strays=True)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        if self.link.since is None or now - self.link.since < self.lost_after_s:
            return  # just (re)connected: heartbeats have not had time to arrive
        with self._lock:
            for slots in self.ledger.workers.values():
                w = self._workers[slots.key]
                if slots.live and now - w.last_seen > self.lost_after_s:
                    self._lose(w.name, f"worker {w.name}: no heartbeat for {now - w.last_seen:.1f} s")
                for call in [c for c in slots.calls.values() if not c.acked and now - c.accepted_at > _ACK_TIMEOUT_S]:
                    self._send(w.name, Hangup(call.attempt_id))
                    self.ledger.forget(call.attempt_id)
                    self.ledger.emit(w.name, DialFailed(call.attempt_id, "job-lost", f"worker {w.name} never acknowledged the job"))

    def _lose(self, name: str, reason: str) -> None:
        w, slots = self._workers[name], self.ledger.workers[name]
        _log.warning("worker_lost", worker=name, host=w.host, calls=len(slots.calls), why=reason)
        self.ledger.lose(name, reason)

    def _write_record(self, attempt_id: str, record: dict) -> None:
        with contextlib.suppress(OSError):
            self.calls_dir.mkdir(parents=True, exist_ok=True)
            (self.calls_dir / f"{attempt_id}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")


def need_remote_broker(broker: str | None) -> BrokerSettings:
    if not broker:
        raise BrokerError("--workers remote needs --broker mqtt://host that the workers connect to as well", code="broker-url")
    return BrokerSettings.from_url(broker)
