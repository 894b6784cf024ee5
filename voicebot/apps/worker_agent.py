"""`voicebot worker`: media workers on this host that take a campaign's calls from the broker.

It runs a local ``WorkerPool`` (the model host and its forked media workers,
as `voicebot run` does) and connects it to the broker:

- jobs (Dial, Hangup) from ``.../workers/<name>/jobs`` go to the pool; a Dial
  seen before is ignored (QoS 1 may deliver it twice), one older than
  ``JOB_TTL_S`` or above capacity is answered ``DialFailed``;
- the pool's events go to ``.../workers/<name>/events`` in order, each call's
  Ended with its JSON record (the manager may be on another host); while the
  broker is away they wait in memory and the calls go on;
- a heartbeat every second on ``.../workers/<name>/status`` (capacity, calls
  in flight, the dialplan's digest), and a last will ``lost`` that the broker
  publishes if this process dies or its connection drops.

SIGTERM or Ctrl-C drains: no new calls, calls in progress finish (a second
signal hangs them up now), then the worker says ``down`` and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import structlog

from voicebot.apps import recipe
from voicebot.bus.broker import BrokerLink, BrokerSettings, run_together
from voicebot.bus.jobs import (
    HEARTBEAT_S,
    JOB_TTL_S,
    JobMessageError,
    WorkerStatus,
    decode_job,
    dialplan_digest,
    encode_event,
    worker_topic,
)
from voicebot.calls.messages import Dial, DialFailed, Ended, Hangup, Ready, WorkerFailed
from voicebot.calls.placer import NoCapacity
from voicebot.campaign.prompts import prerender
from voicebot.dialplan import load_dialplan
from voicebot.errors import SipError
from voicebot.telephony.pool import WorkerPool

_log = structlog.get_logger("voicebot.worker")


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class BusWorkerOptions:
    dialplan: Path
    broker: BrokerSettings
    work_dir: Path  # prompts and call records of this host
    name: str = ""
    calls: int = 8  # calls this host takes at once
    models_dir: Path | None = None
    bind_address: str = "127.0.0.1"
    grace_s: float = 120.0  # after a signal, how long calls in progress may go on

    def __post_init__(self) -> None:
        self.name = self.name or default_worker_name()


class BusWorker:
    """``prepare()`` (models, prompts, the pool), then ``run()`` until ``drain()``/``stop()``."""

    def __init__(self, options: BusWorkerOptions) -> None:
        self.options = options
        self.incarnation = uuid.uuid4().hex[:12]
        self.campaign = ""
        self.digest = ""
        self.pool: WorkerPool | None = None
        self.capacity = 0
        self.calls_dir = options.work_dir / "calls"
        self._outgoing: deque[tuple[str, bytes]] = deque()  # events not yet acknowledged by the broker
        self._seen: set[str] = set()
        self._renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prompts")  # one TTS, one thread
        self._render_for_contact: Callable[[list[dict[str, str]]], object] = lambda contacts: None
        self._draining = threading.Event()
        self._stopping = threading.Event()
        self._drain_started: float | None = None
        self.link = BrokerLink(options.broker, "worker")

    def prepare(self) -> None:
        o = self.options
        loaded = load_dialplan(o.dialplan)
        campaign = loaded.dialplan.campaign
        self.campaign = campaign.name
        self.digest = dialplan_digest(o.dialplan)
        speech = loaded.dialplan.speech
        prompts_dir = o.work_dir / "prompts"
        cache = recipe.prompt_cache(loaded, prompts_dir, o.models_dir)
        prerender(loaded.graph, cache, speech.rate_hz, [])  # prompts with contact fields: per call, below
        self._render_for_contact = functools.partial(prerender, loaded.graph, cache, speech.rate_hz)
        self.pool = recipe.media_workers(o.dialplan, loaded, o.calls, prompts_dir, o.models_dir, self.calls_dir, o.bind_address)
        self.capacity = self.pool.free_slots

    def drain(self) -> None:
        """Take no new calls; let those in progress finish. A second call hangs them up now."""
        if self._draining.is_set():
            self._stopping.set()
        self._draining.set()

    def stop(self) -> None:
        self._draining.set()
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, lambda *_: self.drain())
        signal.signal(signal.SIGTERM, lambda *_: self.drain())

    def run(self) -> None:
        assert self.pool is not None, "prepare() first"
        try:
            asyncio.run(self._main())
        finally:
            self._renderer.shutdown(wait=False, cancel_futures=True)
            self.pool.close()

    # -- the loop --------------------------------------------------------------------------------

    def _topic(self, leaf: str) -> str:
        return worker_topic(self.campaign, self.options.name, leaf)

    def _status(self, state: str) -> bytes:
        assert self.pool is not None
        calls = self.pool.calls() if state == "up" else []
        capacity = 0 if self._draining.is_set() else self.capacity
        return (
            WorkerStatus(
                worker=self.options.name,
                state=state,
                incarnation=self.incarnation,
                host=socket.gethostname(),
                pid=os.getpid(),
                capacity=capacity,
                calls=calls,
                dialplan_sha256=self.digest,
                ts=time.time(),
            )
            .model_dump_json()
            .encode()
        )

    async def _main(self) -> None:
        pump = asyncio.create_task(self._pump_events())

        async def serve(client: aiomqtt.Client) -> None:
            _log.info(
                "worker_connected",
                worker=self.options.name,
                campaign=self.campaign,
                capacity=self.capacity,
                broker=str(self.options.broker),
                waiting_events=len(self._outgoing),
            )
            await client.subscribe(self._topic("jobs"), qos=1)
            # a broken pump (the pool's events stopped flowing) fails loudly instead of heartbeating on
            await run_together(
                [self._take_jobs(client), self._heartbeat(client), self._publish(client)],
                self._finished,
                every=self._watch_drain,
                watch=(pump,),
            )
            await self._flush(client)
            await client.publish(self._topic("status"), self._status("down"), qos=1)

        will = aiomqtt.Will(self._topic("status"), self._status("lost"), qos=1)
        try:
            await self.link.serve(f"voicebot-worker-{self.options.name}", serve, self._finished, will=will)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _finished(self) -> bool:
        assert self.pool is not None
        return self._draining.is_set() and not self.pool.calls() and not self._outgoing

    def _watch_drain(self) -> None:
        assert self.pool is not None
        if not self._draining.is_set():
            return
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            _log.info("worker_draining", worker=self.options.name, calls=len(self.pool.calls()))
        if self._stopping.is_set() or time.monotonic() - self._drain_started > self.options.grace_s:
            self._stopping.set()
            for attempt_id in self.pool.calls():
                self.pool.hangup(attempt_id)  # idempotent: a call already hanging up ignores it

    async def _take_jobs(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                job, sent_at = decode_job(str(message.topic), message.payload)
            except JobMessageError as e:
                _log.warning("bad_job", worker=self.options.name, error=str(e))
                continue
            self._on_job(job, sent_at)

    def _on_job(self, job: Dial | Hangup, sent_at: float) -> None:
        assert self.pool is not None
        if isinstance(job, Hangup):
            self.pool.hangup(job.attempt_id)
            return
        if job.attempt_id in self._seen:
            return  # QoS 1 delivered it again: the call is already ours
        self._seen.add(job.attempt_id)
        age_s = time.time() - sent_at
        if age_s > JOB_TTL_S:
            self._emit(DialFailed(job.attempt_id, "job-expired", f"the job waited {age_s:.0f} s (> {JOB_TTL_S:.0f} s): not dialled"))
        elif self._draining.is_set():
            self._emit(DialFailed(job.attempt_id, "worker-draining", f"worker {self.options.name} is shutting down"))
        else:
            try:
                self.pool.dial(job.attempt_id, job.number, job.contact, job.keys_after_answer)
            except NoCapacity as e:
                self._emit(DialFailed(job.attempt_id, "worker-full", str(e)))
                return
            except SipError as e:
                self._emit(DialFailed(job.attempt_id, e.code, str(e)))
                return
            # The contact's own prompts ("Hi {first_name}") are rendered while the phone rings, so the
            # greeting is in the cache at the answer; a call answered sooner synthesises what it lacks.
            self._renderer.submit(self._render_prompts, job.attempt_id, dict(job.contact))

    def _render_prompts(self, attempt_id: str, contact: dict[str, str]) -> None:
        try:
            self._render_for_contact([contact])
        except Exception as e:  # noqa: BLE001 - a TTS failure must not stop the worker; the call synthesises itself
            _log.warning("prompts_not_rendered", worker=self.options.name, attempt_id=attempt_id, error=str(e))

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            await client.publish(self._topic("status"), self._status("up"), qos=0)
            await asyncio.sleep(HEARTBEAT_S)

    async def _pump_events(self) -> None:
        """The pool's events, in order, onto the outgoing queue (which outlives connections)."""
        assert self.pool is not None
        while True:
            pool_event = await asyncio.to_thread(self.pool.next_event, 0.2)
            if pool_event is None:
                continue
            event = pool_event.event
            if isinstance(event, (Ready, WorkerFailed)):
                _log.info("media_worker", worker=self.options.name, said=repr(event))
                continue
            self._emit(event)

    def _emit(self, event: object) -> None:
        if isinstance(event, Ended) and event.record is not None:
            wav = self.calls_dir / f"{event.attempt_id}.wav"
            if wav.is_file():  # the audio stays on this host: say where
                where = {"worker": self.options.name, "path": str(wav.resolve())}
                event = dataclasses.replace(event, record={**event.record, "recording_on_worker": where})
        self._outgoing.append((self._topic("events"), encode_event(event)))

    async def _publish(self, client: aiomqtt.Client) -> None:
        while True:
            await self._flush(client)
            await asyncio.sleep(0.02)

    async def _flush(self, client: aiomqtt.Client) -> None:
        while self._outgoing:
            topic, payload = self._outgoing[0]
            await client.publish(topic, payload, qos=1)  # returns once the broker has it
            self._outgoing.popleft()
