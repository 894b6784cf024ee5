"""Personalised prompts rendered just in time: for the contacts about to be dialled, and while they ring.

A million contacts cannot all be rendered before the first call (hours of TTS
and gigabytes of audio), and most of them will never answer. So the run tells
this renderer which contacts come next (a look-ahead bounded by the dial rate)
and which it is dialling now (urgent: they go to the front), and the renderer
keeps a small pool of processes busy with exactly those texts:

- a text is rendered once, however many contacts share it ("Hello there" for
  every contact without a first name);
- a contact's texts stay pinned in the ``PromptBudget`` while it is wanted, and
  are unpinned when its call ends; the rest is evicted least recently used;
- a text nobody wants any more (the call ended before it was rendered) is dropped
  from the queue unrendered;
- the run never waits: a call answered before its greeting is ready says the
  greeting's generic form (``PersonalPrompts.generic``, played by the media
  worker's prompt source).

No asyncio and no threads of its own: the run's loop calls ``pump()`` each tick.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from voicebot.campaign.prompt_budget import PromptBudget
from voicebot.campaign.prompts import PersonalPrompts
from voicebot.errors import ConfigError
from voicebot.speech.prompt_cache import PromptCache

_log = structlog.get_logger("voicebot.prompts")

# Before any render has been measured: PCM16 at 8 kHz is 16 kB/s, and a voice speaks ~12 characters a
# second, so ~1.4 kB per character. Afterwards the largest ratio seen, with a margin. A short estimate
# costs little: PromptBudget.add evicts at once what the real size needs.
_BYTES_PER_CHAR_GUESS_8K = 1500
_ESTIMATE_MARGIN = 1.25


def spare_cores() -> int:
    """Rendering processes a run may use: every core but one (the run itself, its media workers)."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass
class _Text:
    path: str
    wanted_by: set[int]
    state: str = "queued"  # queued | rendering | ready | failed
    reserved: int = 0


class JitRenderer:
    """Which contact's texts to render next, rendered by ``render`` on ``executor`` (one text per task).

    ``render(text) -> bytes on disk`` runs in the executor; ``path_of(text)`` names the text's cache file
    (the budget's key). ``workers`` is how many renders may run at once.
    """

    def __init__(
        self,
        personal: PersonalPrompts,
        budget: PromptBudget,
        path_of: Callable[[str], str],
        render: Callable[[str], int],
        executor: concurrent.futures.Executor,
        workers: int,
        rate_hz: int = 8000,
    ) -> None:
        self.personal = personal
        self.budget = budget
        self._path_of = path_of
        self._render = render
        self._executor = executor
        self.workers = max(1, workers)
        self._texts: dict[str, _Text] = {}
        self._contacts: dict[int, tuple[str, ...]] = {}  # wanted contacts -> their texts
        self._urgent: set[int] = set()  # being dialled: their texts first
        self._queue: deque[str] = deque()
        self._running: dict[concurrent.futures.Future[int], str] = {}
        self._bytes_per_char = _BYTES_PER_CHAR_GUESS_8K * rate_hz / 8000
        self._measured_per_char = 0.0
        self.rendered = 0
        self.shared = 0  # texts a contact wanted that another contact had already asked for
        self.failed = 0
        self.dropped = 0  # queued texts nobody wanted any more
        self.dialled_ready = 0
        self.dialled_unready = 0  # dialled before its texts were ready (the answer may hear the generic form)

    # -- what the run tells it --------------------------------------------------------------------------

    @property
    def personalised(self) -> bool:
        return bool(self.personal.templates)

    def lookahead(self, contacts: Iterable[tuple[int, Mapping[str, object]]]) -> None:
        """The contacts due next (replacing the previous look-ahead); those being dialled stay wanted."""
        if not self.personalised:
            return
        fresh = dict(contacts)
        for contact_id in [c for c in self._contacts if c not in fresh and c not in self._urgent]:
            self._release(contact_id)
        for contact_id, fields in fresh.items():
            if contact_id not in self._contacts:
                self._want(contact_id, fields, urgent=False)

    def dialling(self, contact_id: int, fields: Mapping[str, object]) -> bool:
        """The contact is being dialled: its texts go first. Returns whether they are ready already."""
        if not self.personalised:
            return True
        self._urgent.add(contact_id)
        if contact_id not in self._contacts:
            self._want(contact_id, fields, urgent=True)
        else:
            self._queue.extendleft(t for t in self._contacts[contact_id] if self._texts[t].state == "queued")
        ready = self.ready(contact_id)
        if ready:
            self.dialled_ready += 1
        else:
            self.dialled_unready += 1
        return ready

    def ended(self, contact_id: int) -> None:
        """The contact's call is over: its texts may be evicted, and those not rendered yet are not needed."""
        self._urgent.discard(contact_id)
        self._release(contact_id)

    def ready(self, contact_id: int) -> bool:
        return all(self._texts[t].state == "ready" for t in self._contacts.get(contact_id, ()))

    # -- the work ------------------------------------------------------------------------------------------

    def pump(self) -> int:
        """Collect finished renders and start new ones, up to ``workers`` at once. Returns renders finished."""
        finished = 0
        for future in [f for f in self._running if f.done()]:
            text = self._running.pop(future)
            self._finished(text, future)
            finished += 1
        while self._queue and len(self._running) < self.workers:
            text = self._queue.popleft()
            entry = self._texts.get(text)
            if entry is None or entry.state != "queued":
                continue  # dropped, or queued twice (urgent)
            estimate = int(len(text) * self._bytes_per_char) + 64
            if not self.budget.reserve(estimate):
                self._queue.appendleft(text)  # everything left is pinned: wait for calls to end
                break
            entry.state, entry.reserved = "rendering", estimate
            self._running[self._executor.submit(self._render, text)] = text
        return finished

    def wait_idle(self, timeout_s: float) -> None:
        """For tests and the benchmark: let the queue drain (renders finish) for at most ``timeout_s``."""
        concurrent.futures.wait(list(self._running), timeout=timeout_s)
        self.pump()

    def stats(self) -> dict[str, int]:
        return {
            "wanted_contacts": len(self._contacts),
            "queued": sum(1 for t in self._texts.values() if t.state == "queued"),
            "rendering": len(self._running),
            "rendered": self.rendered,
            "shared": self.shared,
            "failed": self.failed,
            "dropped": self.dropped,
            "dialled_ready": self.dialled_ready,
            "dialled_unready": self.dialled_unready,
            **self.budget.stats().as_dict(),
        }

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- inside --------------------------------------------------------------------------------------------

    def _want(self, contact_id: int, fields: Mapping[str, object], urgent: bool) -> None:
        texts = tuple(self.personal.texts(fields))
        self._contacts[contact_id] = texts
        fresh = []
        for text in texts:
            entry = self._texts.get(text)
            if entry is None:
                path = self._path_of(text)
                entry = self._texts[text] = _Text(path, set())
                if path in self.budget:  # rendered for an earlier contact (or run) and still on disk
                    entry.state = "ready"
                else:
                    fresh.append(text)
            elif entry.wanted_by:
                self.shared += 1
            elif entry.state == "failed":
                entry.state = "queued"
                fresh.append(text)
            entry.wanted_by.add(contact_id)
            self.budget.pin(entry.path)
        if urgent:
            self._queue.extendleft(reversed(fresh))
        else:
            self._queue.extend(fresh)

    def _release(self, contact_id: int) -> None:
        for text in self._contacts.pop(contact_id, ()):
            entry = self._texts.get(text)
            if entry is None:
                continue
            entry.wanted_by.discard(contact_id)
            self.budget.unpin(entry.path)
            if entry.wanted_by:
                continue
            if entry.state == "queued":
                self.dropped += 1
            if entry.state != "rendering":
                del self._texts[text]  # its file (if any) stays in the budget's LRU until evicted

    def _finished(self, text: str, future: concurrent.futures.Future[int]) -> None:
        entry = self._texts.get(text)
        path = entry.path if entry is not None else self._path_of(text)
        reserved = entry.reserved if entry is not None else 0
        try:
            size = future.result()
        except Exception as exc:  # a TTS failure costs this text its personal form, never the run
            self.budget.cancel(reserved)
            self.failed += 1
            _log.warning("prompt_not_rendered", text_chars=len(text), error=f"{type(exc).__name__}: {exc}")
            if entry is not None:
                entry.state = "failed"
            return
        self.rendered += 1
        self._measured_per_char = max(self._measured_per_char, size / max(1, len(text)))
        self._bytes_per_char = self._measured_per_char * _ESTIMATE_MARGIN
        kept = self.budget.add(path, size, reserved=reserved)
        if entry is None:
            return  # wanted by nobody any more: its file waits in the LRU
        if not kept:
            entry.state = "failed"  # no room even after eviction: the call says the generic form
            return
        entry.state = "ready"
        entry.reserved = 0
        if not entry.wanted_by:
            del self._texts[text]


# --- the production pool: processes with their own TTS ----------------------------------------------------

_process_cache = None  # one PromptCache per rendering process, made by _init_process
_process_rate_hz = 8000


def _init_process(prompts_dir: Path, tts_settings: object, language: str, models_dir: Path | None, rate_hz: int) -> None:
    global _process_cache, _process_rate_hz
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="orphan-watch", daemon=True).start()
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import make_tts

    _process_cache = PromptCache(prompts_dir, make_tts(tts_settings, language, models_dir))  # type: ignore[arg-type]
    _process_rate_hz = rate_hz


def _exit_with_parent(parent: int) -> None:
    # A run killed with -9 cannot shut its pool down, and an idle pool process waits on its queue for ever.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _render_in_process(text: str) -> int:
    assert _process_cache is not None, "the rendering process was not initialised"
    _process_cache.get(text, _process_rate_hz)
    return _process_cache.path(text, _process_rate_hz).stat().st_size


def render_pool(
    workers: int, prompts_dir: Path, tts_settings: object, language: str, models_dir: Path | None, rate_hz: int
) -> tuple[concurrent.futures.Executor, Callable[[str], int]]:
    """Processes with a TTS each (spawned: the run has threads, and Piper's phonemiser is not thread-safe)."""
    executor = concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_process,
        initargs=(prompts_dir, tts_settings, language, models_dir, rate_hz),
    )
    return executor, _render_in_process


# --- a call's prompts: the personal form if it is ready, else the generic one -------------------------------


class FallbackPrompts:
    """A call's prompt source (``session.PromptSource``): a personal text not rendered yet is replaced by its
    generic form (already rendered with the static prompts), so the answer never waits for the TTS."""

    def __init__(self, cache: PromptCache, generic: Mapping[str, str]) -> None:
        self._cache = cache
        self._generic = generic
        self.fell_back: list[str] = []  # the personal texts that were replaced, for the call's record

    def get(self, text: str, rate_hz: int) -> bytes:
        generic = self._generic.get(text)
        if generic is not None and not self._cache.has(text, rate_hz):
            self.fell_back.append(text)
            return self._cache.get(generic, rate_hz)
        return self._cache.get(text, rate_hz)

    def get_wav(self, wav: Path, rate_hz: int) -> bytes:
        return self._cache.get_wav(wav, rate_hz)

    def as_played(self, transcript: list[dict]) -> list[dict]:
        """The call's transcript with what the person heard: a bot line that was said in its generic form
        reads as that form (the script wrote the personal text it asked for)."""
        pending = list(self.fell_back)  # in the order they were played, as the transcript is
        out = []
        for line in transcript:
            text = line.get("text")
            if line.get("speaker") == "bot" and text in pending:
                pending.remove(text)
                line = {**line, "text": self._generic[text]}
            out.append(line)
        return out


# --- the budget at the start of a run ------------------------------------------------------------------


def open_budget(directory: Path, budget_bytes: int, permanent: Iterable[Path]) -> PromptBudget:
    """The budget over ``directory`` as it is: every cache file found (an earlier run's too) is an entry,
    the oldest least recently used; ``permanent`` ones (static prompts, generic forms) are never evicted.
    Over budget, the oldest others are deleted now."""
    keep = {str(p) for p in permanent}
    budget = PromptBudget(budget_bytes, lambda key: Path(key).unlink(missing_ok=True))
    found = []
    for path in directory.glob("*/*.pcm") if directory.is_dir() else ():
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        found.append((str(path) in keep, st.st_mtime, str(path), st.st_size))
    static_bytes = sum(size for permanent_, _, _, size in found if permanent_)
    if static_bytes > budget_bytes:
        raise ConfigError(
            f"campaign.prompt_cache.budget_mb: {budget_bytes / 1e6:.1f} MB is less than the script's static prompts "
            f"and generic forms take ({static_bytes / 1e6:.1f} MB): raise it",
            code="prompt-budget-too-small",
        )
    for permanent_, _, key, size in sorted(found, reverse=False, key=lambda f: (not f[0], f[1])):  # static first
        budget.add(key, size, permanent=permanent_)
    return budget
