"""A campaign run: contacts in, calls out, and every result in the store before anything else happens.

The order of each step is what makes a crash harmless:

1. ``store.start_attempt`` commits a new attempt (a fresh id) and moves the
   contact to ``in_call``; only then is the number handed to the pool;
2. ``store.mark_dialling`` records the worker that took it;
3. the worker's ``Ended`` is written with ``store.finish_attempt`` (result, call
   record, when to retry) before the next call is placed.

After a ``kill -9`` the next run finds attempts that never ended and marks them
``interrupted`` (``store.recover``): they count as attempts, and the retry goes
out under a new id, so no attempt is dialled twice and no result is lost.

Ctrl-C pauses: nothing new is dialled and calls in progress finish (a second
Ctrl-C, or SIGTERM, ends them now). Running again resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from voicebot.bus.broker import BrokerError, BrokerSettings, EmbeddedBroker
from voicebot.bus.control import ControlCommand, ControlListener, RefusedCommand
from voicebot.bus.dispatch import RemoteWorkers, need_remote_broker
from voicebot.bus.jobs import dialplan_digest
from voicebot.bus.outbox import OutboxPublisher
from voicebot.calls.messages import Answered, DialFailed, Dialled, Ended, HandoffRequested, Ringing, ScriptProgress
from voicebot.calls.placer import CallPlacer, NoCapacity, TokenBucket
from voicebot.campaign.contacts import RowProblem
from voicebot.campaign.importer import ImportReport, add_campaign_dnc, import_campaign_contacts
from voicebot.campaign.jit_prompts import JitRenderer, open_budget, render_pool, spare_cores
from voicebot.campaign.prompts import PersonalPrompts, prerender, static_texts
from voicebot.campaign.schedule import contact_zone, next_window_start, retry_at
from voicebot.campaign.store import Attempt, AttemptResult, CampaignStore
from voicebot.config import ContactsImport
from voicebot.dialplan import LoadedDialplan, load_dialplan
from voicebot.errors import ConfigError
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.tts import make_tts

_log = structlog.get_logger("voicebot.campaign")

# How a run gets its calls placed: concurrency -> a CallPlacer as a context manager. The entry point hands in
# media workers on this host (voicebot.apps.recipe.media_workers: pjsua2 and the speech engines); with none, and
# RunOptions.workers "remote", the run dispatches over the broker and loads neither.
PlacerFactory = Callable[[int], contextlib.AbstractContextManager[CallPlacer]]

PROGRESS_EVERY_S = 10.0
IMPORT_LOG_EVERY_S = 5.0
LOOKAHEAD_EVERY_S = 0.5  # how often the contacts due next are handed to the prompt renderer
MAX_LOOKAHEAD = 2000  # contacts ahead at most, whatever the dial rate
_DIAL_FAILED_RETRY_S = 5.0  # a call that never left (worker full or lost before dialling)


@dataclass
class RunOptions:
    dialplan: Path
    db: Path
    contacts: Path | None = None
    models_dir: Path | None = None
    prompts_dir: Path | None = None  # default: next to the database
    calls_dir: Path | None = None  # per-call JSON records and recordings; default: next to the database
    concurrency: int | None = None  # overrides campaign.max_concurrent_calls
    bind_address: str = "127.0.0.1"
    grace_s: float = 120.0  # after Ctrl-C, how long calls in progress may go on
    until_idle: bool = False  # stop once nothing is due now, instead of waiting for retries and calling windows
    ignore_calling_window: bool = False  # demos and tests on a local PBX only: never against real people
    columns: dict[str, str] = field(default_factory=dict)  # --column: field -> header, over campaign.contacts
    broker: str | None = ""  # events go out over MQTT: a URL, "" for a private mosquitto, None for none
    workers: str = "local"  # local: media workers of this process; remote: `voicebot worker`s reached over the broker
    wait_for_workers_s: float = 60.0  # remote: how long to wait for the first worker's heartbeat
    poll_s: float = 0.1
    prompt_cache_mb: float | None = None  # overrides campaign.prompt_cache.budget_mb

    def __post_init__(self) -> None:
        stem = self.db.with_suffix("")
        self.prompts_dir = self.prompts_dir or stem.parent / f"{stem.name}.prompts"
        self.calls_dir = self.calls_dir or stem.parent / f"{stem.name}.calls"


@dataclass
class Progress:
    """What the live view shows; counted by the run, read by the view."""

    started: float = field(default_factory=time.monotonic)
    dialled: int = 0
    ringing: int = 0
    answered: int = 0
    ended: int = 0
    in_call: int = 0
    outcomes: Counter = field(default_factory=Counter)
    state: str = "starting"
    note: str = ""
    prompts: dict[str, int] = field(default_factory=dict)  # the prompt renderer's and cache's figures

    def per_minute(self) -> float:
        minutes = max(1e-9, (time.monotonic() - self.started) / 60)
        return self.ended / minutes


class CampaignRun:
    """One run of a campaign. ``prepare()`` then ``run()``; ``pause()``/``stop()`` from a signal handler."""

    def __init__(
        self,
        options: RunOptions,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pool_factory: PlacerFactory | None = None,
        on_import: Callable[[int, int], None] | None = None,
    ) -> None:
        self.options = options
        self.clock = clock  # wall time: calling windows, retry times, the store's timestamps
        self.monotonic = monotonic  # pacing (calls_per_second) and the Ctrl-C grace period
        self.pool_factory = pool_factory
        self.on_import = on_import  # (rows read, rows in the file): a progress bar
        self.loaded: LoadedDialplan | None = None
        self.store: CampaignStore | None = None
        self.progress = Progress()
        self.imported: ImportReport | None = None
        self.recovered: list[str] = []
        self._in_flight: dict[str, Attempt] = {}
        self._live_progress: set[str] = set()  # attempts whose script events came live (none from the record then)
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._paused_at: float | None = None
        self.publisher: OutboxPublisher | None = None
        self.control: ControlListener | None = None
        self.concurrency = 0
        self._held = False  # paused over MQTT: nothing new is dialled, the run waits for resume
        self._progress_at: float | None = None
        self._progress_state = ""
        self.prompts: JitRenderer | None = None
        self._token_wait_s = 0.0  # until the pacing bucket's next token, when the last dial round ran out
        self._lookahead_at: float | None = None

    # -- before dialling ---------------------------------------------------------------------------

    def prepare(self) -> None:
        o = self.options
        self.loaded = load_dialplan(o.dialplan)
        campaign = self.loaded.dialplan.campaign
        _log.info("run_preparing", campaign=campaign.name, dialplan=str(o.dialplan), db=str(o.db), contacts=str(o.contacts or ""))
        o.db.parent.mkdir(parents=True, exist_ok=True)
        self.store = store = CampaignStore.open(o.db, campaign.name, str(o.dialplan))
        now = self.clock()
        self.recovered = store.recover(now, max_attempts=campaign.retry.max_attempts)
        for attempt_id in self.recovered:
            _log.warning("attempt_interrupted", attempt_id=attempt_id, why="the previous run ended while it was in progress")
        # the DNC list first, so the import can say which of the file's numbers are on it
        dnc_problems: list[RowProblem] = []
        if campaign.contacts.dnc_file:
            dnc_path = Path(campaign.contacts.dnc_file)
            if not dnc_path.is_absolute():
                dnc_path = o.dialplan.parent / dnc_path
            dnc_problems = add_campaign_dnc(store, campaign, dnc_path)
        if o.contacts is not None:
            self.imported = self._import(store, o.contacts)
            self.imported.problems.extend(dnc_problems)
        self._prepare_prompts()

    def _import(self, store: CampaignStore, path: Path) -> ImportReport:
        assert self.loaded is not None
        campaign = self.loaded.dialplan.campaign
        _log.info("import_started", file=str(path))
        mapping = contacts_mapping(campaign.contacts, self.options.columns)
        logged_at = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal logged_at
            if self.on_import is not None:
                self.on_import(done, total)
            if time.monotonic() - logged_at >= IMPORT_LOG_EVERY_S:  # a million rows take a minute: say so meanwhile
                logged_at = time.monotonic()
                _log.info("import_progress", file=str(path), rows=done, of=total)

        report = import_campaign_contacts(path, campaign, mapping, store, on_progress=progress)
        _log.info(
            "import_finished",
            file=str(path),
            rows=report.rows,
            contacts=report.contacts,
            added=report.added,
            known=report.known,
            duplicates=report.duplicates,
            dnc=report.dnc,
            problems=len(report.problems),
            seconds=round(report.seconds, 2),
            rows_per_s=round(report.rate_per_s),
        )
        return report

    def _prepare_prompts(self) -> None:
        """Static prompts (and the generic forms of personal ones) now, once; personal ones just in time."""
        assert self.loaded is not None
        o = self.options
        speech = self.loaded.dialplan.speech
        settings = self.loaded.dialplan.campaign.prompt_cache
        assert o.prompts_dir is not None  # set by RunOptions.__post_init__
        started = time.perf_counter()
        cache = PromptCache(o.prompts_dir, make_tts(speech.tts, speech.language, o.models_dir))
        report = prerender(self.loaded.graph, cache, speech.rate_hz, [])
        personal = PersonalPrompts.of(self.loaded.graph)
        generic = personal.generic_texts()
        for text in generic:
            cache.get(text, speech.rate_hz)
        permanent = [cache.path(t, speech.rate_hz) for t in generic]
        # recorded prompts are not pinned: converting one again after an eviction is a resample, not a TTS
        permanent += [cache.path(t, speech.rate_hz) for t in static_texts(self.loaded.graph)]
        budget_mb = o.prompt_cache_mb or settings.budget_mb
        budget = open_budget(o.prompts_dir, int(budget_mb * 1e6), permanent)
        _log.info(
            "static_prompts_rendered",
            prompts=report.rendered,
            synthesized=report.synthesized,
            generic_forms=len(generic),
            personal_templates=len(personal.templates),
            seconds=round(time.perf_counter() - started, 2),
            **budget.stats().as_dict(),
        )
        if o.workers == "remote":
            return  # a remote worker renders a contact's prompts itself when it takes the Dial, while it rings
        workers = settings.render_workers or spare_cores()
        executor, render = render_pool(workers, o.prompts_dir, speech.tts, speech.language, o.models_dir, speech.rate_hz)
        self.prompts = JitRenderer(
            personal,
            budget,
            lambda text: str(cache.path(text, speech.rate_hz)),
            render,
            executor,
            workers,
            speech.rate_hz,
        )

    # -- the run --------------------------------------------------------------------------------------

    def run(self, on_tick: Callable[[CampaignRun], None] | None = None) -> dict:
        assert self.loaded is not None and self.store is not None, "prepare() first"
        o = self.options
        campaign = self.loaded.dialplan.campaign
        store = self.store
        self.concurrency = concurrency = o.concurrency or campaign.max_concurrent_calls
        store.set_state("state", "running")
        self.progress.state = "running"
        # a tenth of a second of tokens: a round that woke late catches up, and the rate over a second holds
        bucket = TokenBucket(campaign.calls_per_second, burst=max(1, math.ceil(campaign.calls_per_second / 10)))
        hung_up: set[str] = set()
        _log.info("workers_starting", concurrency=concurrency, workers=o.workers)
        with self._bus(campaign.name), self._workers(concurrency) as pool, self._renderer():
            self.progress.note = f"{pool.workers} media workers" + (" over the broker" if o.workers == "remote" else "")
            _log.info("dialling", media_workers=pool.workers, capacity=pool.capacity, calls_per_second=campaign.calls_per_second)
            while True:
                self._take_events(pool)
                self._take_commands(pool)
                self._tend_prompts()
                self._report_progress()
                if self._stop.is_set():
                    for attempt_id in self._in_flight.keys() - hung_up:
                        pool.hangup(attempt_id)  # its Ended (outcome stopped) comes back like any other
                        hung_up.add(attempt_id)
                    if self._paused_at is None:
                        self._paused_at = self.monotonic()
                elif self._pause.is_set():
                    if self._paused_at is None:
                        self._paused_at = self.monotonic()
                    if self.monotonic() - self._paused_at > o.grace_s:
                        self._stop.set()  # the grace period is over: end the calls still going
                elif not self._held:
                    self._dial_due(pool, bucket, self.concurrency)
                if on_tick is not None:
                    on_tick(self)
                if not self._in_flight:
                    if self._pause.is_set() or self._stop.is_set():
                        break
                    next_due = store.next_due_at()
                    if self._held:
                        self.progress.note = "held over MQTT: send resume to dial again"  # wait, even with nothing due
                    elif next_due is None:
                        break  # every contact is done (or on the DNC list)
                    elif o.until_idle and next_due > self.clock():
                        break  # retries and calling windows are for a later run
                    else:
                        self._note_waiting(next_due)
                # a token due sooner than the poll: wake for it, or the loop's poll caps the dial rate
                # (measured: 14 attempts/s at calls_per_second 40 with a 0.1 s poll)
                event = pool.next_event(min(o.poll_s, self._token_wait_s) if self._token_wait_s else o.poll_s)
                self._token_wait_s = 0.0
                if event is not None:
                    self._on_event(event.event, event.worker_id)
            if self._pause.is_set() or self._stop.is_set():
                self.progress.state = "paused"
            else:
                self.progress.state = "finished" if store.next_due_at() is None else "idle"
            store.set_state("state", self.progress.state)
            self._report_progress(force=True)  # the run's last word, while the bus is still up
        return store.summary()

    @contextlib.contextmanager
    def _renderer(self) -> Iterator[None]:
        try:
            yield
        finally:
            if self.prompts is not None:
                self.prompts.close()

    def _tend_prompts(self) -> None:
        """Renders finished and started; every LOOKAHEAD_EVERY_S, the contacts due next handed over."""
        if self.prompts is None:
            return
        assert self.store is not None and self.loaded is not None
        campaign = self.loaded.dialplan.campaign
        now = self.monotonic()
        if self.prompts.personalised and (self._lookahead_at is None or now - self._lookahead_at >= LOOKAHEAD_EVERY_S):
            self._lookahead_at = now
            horizon_s = campaign.prompt_cache.lookahead_s
            # as many contacts as the dial rate reaches within the horizon: never the whole list
            limit = min(MAX_LOOKAHEAD, max(self.concurrency, math.ceil(campaign.calls_per_second * horizon_s)))
            due = self.store.due(self.clock() + horizon_s, limit=limit)
            self.prompts.lookahead((c.id, c.fields) for c in due)
        self.prompts.pump()
        self.progress.prompts = self.prompts.stats()

    @contextlib.contextmanager
    def _bus(self, campaign: str):  # noqa: ANN202
        """Events out over MQTT for the run's length; at the end, what is still stored goes out (10 s at most)."""
        o = self.options
        if o.broker is None:
            yield None
            return
        embedded = None
        if o.broker == "":
            stem = o.db.with_suffix("")
            embedded = EmbeddedBroker(stem.parent / f"{stem.name}.mqtt").start()
            settings = embedded.settings
        else:
            settings = BrokerSettings.from_url(o.broker)
        assert self.store is not None
        self.publisher = OutboxPublisher(self.store, campaign, settings).start()
        self.control = ControlListener(campaign, settings).start()
        try:
            yield self.publisher
        finally:
            self.control.stop()
            if not self.publisher.flush(10.0):
                _log.warning(
                    "events_not_published", backlog=self.publisher.backlog, why="the broker is unreachable; they stay in the store"
                )
            self.publisher.stop()
            if embedded is not None:
                embedded.stop()

    @contextlib.contextmanager
    def _workers(self, concurrency: int) -> Iterator[CallPlacer]:
        o = self.options
        if self.pool_factory is not None:
            with self.pool_factory(concurrency) as placer:
                yield placer
            return
        if o.workers == "local":
            raise ConfigError("a run with local media workers needs a pool_factory (voicebot.apps.recipe.media_workers)")
        assert self.loaded is not None and o.calls_dir is not None
        broker = need_remote_broker(o.broker)
        campaign = self.loaded.dialplan.campaign.name
        with RemoteWorkers(campaign, broker, dialplan_digest(o.dialplan), concurrency, o.calls_dir).start() as remote:
            self.progress.note = f"waiting for workers on {broker} (start `voicebot worker {o.dialplan} --broker URL`)"
            if not remote.wait_for_workers(o.wait_for_workers_s):
                raise BrokerError(
                    f"no worker for campaign '{campaign}' on {broker} within {o.wait_for_workers_s:.0f} s: "
                    f"start `voicebot worker {o.dialplan} --broker URL` on a media host",
                    code="no-workers",
                )
            _log.info("remote_workers", workers=remote.live_workers())
            yield remote

    def _note_waiting(self, next_due: float) -> None:
        wait_s = next_due - self.clock()
        if wait_s > 1:
            at = datetime.fromtimestamp(next_due, UTC).strftime("%Y-%m-%d %H:%M UTC")
            note = f"waiting: next call at {at} (calling window or retry delay)"
            if note != self.progress.note:
                _log.info("waiting", next_call_at=at, why="calling window or retry delay")
            self.progress.note = note

    def pause(self) -> None:
        """Dial nothing new; let calls in progress finish. A second pause ends them now."""
        if self._pause.is_set():
            self._stop.set()
        self._pause.set()
        self.progress.state = "pausing"

    def stop(self) -> None:
        self._pause.set()
        self._stop.set()
        self.progress.state = "stopping"

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, lambda *_: self.pause())
        signal.signal(signal.SIGTERM, lambda *_: self.stop())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    # -- control over MQTT and progress events --------------------------------------------------------------

    def _take_commands(self, pool: CallPlacer) -> None:
        if self.control is None:
            return
        while True:
            try:
                command = self.control.commands.get_nowait()
            except queue.Empty:
                return
            self._apply(command, pool)

    def _apply(self, command: ControlCommand | RefusedCommand, pool: CallPlacer) -> None:
        assert self.store is not None
        record: dict[str, object]
        if isinstance(command, RefusedCommand):
            record = {"command": None, "ok": False, "detail": command.error, "payload": command.payload}
        else:
            ok, detail = self._command(command, pool)
            record = {"command": command.command, "value": command.value, "id": command.id, "by": command.by, "ok": ok, "detail": detail}
        self.store.add_event("campaign.control", None, record, self.clock())
        _log.info("control", **record)
        self._report_progress(force=True)

    def _command(self, command: ControlCommand, pool: CallPlacer) -> tuple[bool, str]:
        if command.command == "pause":
            self._held = True
            self.progress.state = "held"
            return True, f"holding: nothing new is dialled; {len(self._in_flight)} calls in progress go on"
        if command.command == "resume":
            if self._stop.is_set():
                return False, "the run is stopping: start it again to resume"
            self._held = False
            self._pause.clear()
            self._paused_at = None
            self.progress.state = "running"
            return True, "dialling again"
        if command.command == "stop":
            self.stop()
            return True, f"stopping: {len(self._in_flight)} calls in progress are ended now"
        assert command.value is not None
        self.concurrency = pool.concurrency = command.value
        capacity = pool.capacity
        if command.value > capacity:
            return True, f"concurrency {command.value}, but the workers take {capacity} calls at once"
        return True, f"concurrency {command.value}"

    def _report_progress(self, force: bool = False) -> None:
        """A campaign.progress event on every change of state and every PROGRESS_EVERY_S."""
        assert self.store is not None
        now = time.monotonic()
        state = self.progress.state
        due = self._progress_at is None or now - self._progress_at >= PROGRESS_EVERY_S or state != self._progress_state
        if not (due or force):
            return
        self._progress_at, self._progress_state = now, state
        p = self.progress
        totals = self.store.summary()
        _log.info(
            "progress",
            state=state,
            note=p.note,
            dialled=p.dialled,
            answered=p.answered,
            in_call=len(self._in_flight),
            ended=p.ended,
            pending=totals["pending"],
            prompts=p.prompts,
        )
        self.store.add_event(
            "campaign.progress",
            None,
            {
                "state": state,
                "concurrency": self.concurrency,
                "dialled": p.dialled,
                "answered": p.answered,
                "in_call": len(self._in_flight),
                "ended": p.ended,
                "per_minute": round(p.per_minute(), 2),
                "outcomes": dict(p.outcomes),
                "contacts": totals["contacts"],
                "pending": totals["pending"],
                "done": totals["done"],
                "dnc": totals["dnc"],
            },
            self.clock(),
        )

    # -- dialling ------------------------------------------------------------------------------------

    def _dial_due(self, pool: CallPlacer, bucket: TokenBucket, concurrency: int) -> None:
        assert self.store is not None and self.loaded is not None
        window = self.loaded.dialplan.campaign.calling_window
        free = min(concurrency - len(self._in_flight), pool.free_slots)
        if free <= 0:
            return
        now = self.clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        for contact in self.store.due(now, limit=free * 4):
            opens = (
                now_dt if self.options.ignore_calling_window else next_window_start(now_dt, contact_zone(contact.timezone, window), window)
            )
            if opens > now_dt:
                self.store.defer(contact.id, opens.timestamp())  # outside its calling window: come back when it opens
                continue
            wait_s = bucket.take(self.monotonic())
            if wait_s > 0:
                self._token_wait_s = wait_s
                return  # calls_per_second: the next one waits for a token
            attempt = self.store.start_attempt(contact.id, now)  # committed before the number leaves
            if self.prompts is not None:
                self.prompts.dialling(contact.id, attempt.fields)  # not ready: rendered while it rings
            try:
                worker_id = pool.dial(attempt.id, attempt.phone, tuple(attempt.fields.items()), self._extension_keys(attempt.extension))
            except NoCapacity:
                self._finish(attempt, AttemptResult(outcome="not_dialled", reason="no free worker slot"), now, retry=now)
                return
            self.store.mark_dialling(attempt.id, worker_id, now)
            self._in_flight[attempt.id] = attempt
            self.progress.dialled += 1
            self.progress.in_call = len(self._in_flight)
            free -= 1
            if free <= 0:
                return

    def _extension_keys(self, extension: str) -> str:
        assert self.loaded is not None
        return extension_keys(extension, self.loaded.dialplan.campaign.extensions.pause_s)

    # -- results ----------------------------------------------------------------------------------------

    def _take_events(self, pool: CallPlacer) -> None:
        while (event := pool.next_event(0)) is not None:
            self._on_event(event.event, event.worker_id)

    def _on_event(self, event: object, worker_id: int) -> None:
        assert self.store is not None
        now = self.clock()
        attempt_id = getattr(event, "attempt_id", None)
        if isinstance(event, Dialled):
            self.store.add_event("call.dialled", attempt_id, {"uri": event.uri, "worker_id": worker_id}, now)
        elif isinstance(event, Ringing):
            self.progress.ringing += 1
            self.store.add_event("call.ringing", attempt_id, {"sip_code": event.sip_code, "after_ms": event.after_ms}, now)
        elif isinstance(event, Answered):
            self.progress.answered += 1
            self.store.add_event("call.answered", attempt_id, {"setup_ms": event.setup_ms}, now)
        elif isinstance(event, ScriptProgress):
            self._live_progress.add(event.attempt_id)
            self._script_events(event.attempt_id, event.nodes, event.turns, now)
        elif isinstance(event, HandoffRequested):
            self.store.add_event("handoff.requested", attempt_id, event.context, now)
        elif isinstance(event, Ended) and attempt_id in self._in_flight:
            attempt = self._in_flight.pop(attempt_id)
            result = self._result(event)
            self._conversation_events(attempt_id, result, now)
            self._finish(attempt, result, now)
        elif isinstance(event, DialFailed) and attempt_id in self._in_flight:
            attempt = self._in_flight.pop(attempt_id)
            result = AttemptResult(outcome="not_dialled", reason=f"{event.code}: {event.message}")
            self._finish(attempt, result, now, retry=now + _DIAL_FAILED_RETRY_S)
        self.progress.in_call = len(self._in_flight)

    def _result(self, ended: Ended) -> AttemptResult:
        assert self.options.calls_dir is not None
        outcome = ended.session_outcome if ended.outcome == "answered" and ended.session_outcome else ended.outcome
        record = ended.record  # the result travels on the message; files in calls_dir are an optional copy
        wav = self.options.calls_dir / f"{ended.attempt_id}.wav"
        return AttemptResult(
            outcome=outcome,
            session_outcome=ended.session_outcome,
            sip_code=ended.sip_code,
            reason=ended.reason,
            setup_ms=ended.setup_ms,
            talk_ms=ended.talk_ms,
            hangup_by=ended.hangup_by,
            handoff=ended.handoff,
            path=list(record.get("path", [])) if record else [],
            slots=dict(record.get("slots", {})) if record else {},
            transcript=list(record.get("transcript", [])) if record else [],
            recording=str(wav) if wav.is_file() else None,
            record=record,
        )

    def _conversation_events(self, attempt_id: str, result: AttemptResult, now: float) -> None:
        # a session that reports no live progress: its script's events from the record, after the call
        if attempt_id in self._live_progress:
            self._live_progress.discard(attempt_id)
            return
        self._script_events(attempt_id, result.path, (result.record or {}).get("decisions", []), now)

    def _script_events(self, attempt_id: str, nodes: Iterable[str], turns: Iterable[dict], now: float) -> None:
        assert self.store is not None
        for node in nodes:
            self.store.add_event("call.node_entered", attempt_id, {"node": node}, now)
        for turn in turns:
            if turn.get("kind") not in ("heard", "silence", "dtmf"):
                continue  # e.g. a failed transfer: the script's own doing, not the person's
            self.store.add_event(
                "call.utterance",
                attempt_id,
                {
                    "node": turn.get("node", ""),
                    "kind": turn.get("kind"),
                    "text": turn.get("text", ""),
                    "confidence": turn.get("confidence"),
                    "intent": turn.get("intent"),
                    "result": turn.get("result", ""),
                },
                now,
            )

    def _finish(self, attempt: Attempt, result: AttemptResult, now: float, retry: float | None = None) -> None:
        assert self.store is not None and self.loaded is not None
        policy = self.loaded.dialplan.campaign.retry
        if retry is None:
            seq = attempt.seq
            at = retry_at(result.outcome, seq, policy, datetime.fromtimestamp(now, UTC))
            retry = at.timestamp() if at is not None else None
        elif attempt.seq >= policy.max_attempts:
            retry = None
        self.store.finish_attempt(attempt.id, result, now, retry, dnc=result.outcome == "dnc")
        if self.prompts is not None:
            self.prompts.ended(attempt.contact_id)
        self.progress.ended += 1
        self.progress.outcomes[result.outcome] += 1
        _log.info(
            "attempt_ended",
            attempt_id=attempt.id,
            phone=attempt.phone,
            outcome=result.outcome,
            sip_code=result.sip_code,
            talk_ms=result.talk_ms,
            retry_at=retry,
        )


def extension_keys(extension: str, pause_s: float) -> str:
    """An extension as keys after the answer: the pause in 500 ms commas (rounded up), then its digits."""
    return "," * math.ceil(pause_s / 0.5) + extension if extension else ""


_MAPPING_KEYS = ("phone", "tags", "priority", "timezone", "region")


def contacts_mapping(base: ContactsImport, columns: dict[str, str]) -> ContactsImport:
    """The dialplan's column mapping with command-line overrides: phone/tags/priority/timezone/region
    name those columns, any other key maps a contact field to a column."""
    special = {k: v for k, v in columns.items() if k in _MAPPING_KEYS}
    fields = {**base.columns, **{k: v for k, v in columns.items() if k not in _MAPPING_KEYS}}
    return base.model_copy(update={**special, "columns": fields})
