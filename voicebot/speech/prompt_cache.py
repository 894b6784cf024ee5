"""Prompt audio rendered before the call: an on-disk PCM cache, and what a script will say.

The campaign manager renders every prompt it can know in advance (static ones
once, personalised ones per contact) so that a call never waits for Piper; the
media workers read the same files. Entries are keyed by (voice, rate, text), so
changing the voice or its settings never plays stale audio.

A cache file is a 16-byte header (magic, rate, PCM length, CRC-32 of the PCM)
followed by PCM16 mono. The header catches a truncated or corrupted file (a full
disk, a crash before the data reached the disk, bit rot): such an entry counts
as a miss and is rendered again. Files are written to a temporary name and
renamed into place, so a reader in another process sees the old file or the
whole new one, never half of it. No fsync: a file lost to a crash fails its
check and is rendered again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import tempfile
import threading
import time
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping, Protocol

from voicebot.audio.frames import read_wav
from voicebot.audio.resample import resample
from voicebot.config import Prompt, Scalar
from voicebot.errors import ScriptError, TtsError
from voicebot.script.graph import BUILTIN_FIELDS, ScriptGraph
from voicebot.script.templates import render, template_fields

_HEADER = struct.Struct("<4sIII")  # magic, rate_hz, PCM bytes, CRC-32 of the PCM
_MAGIC = b"VBP1"


class Tts(Protocol):
    @property
    def voice_id(self) -> str: ...

    def synthesize(self, text: str, rate_hz: int) -> bytes: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries found damaged and rendered again (also counted as misses)
    synthesis_s: float = 0.0  # wall time spent in the TTS on misses
    audio_s: float = 0.0  # length of the audio synthesised on misses


class PromptCache:
    """PCM16 prompts on disk, keyed by (voice, rate, text); safe to share between processes."""

    def __init__(self, directory: Path, tts: Tts) -> None:
        self.directory = Path(directory)
        self.tts = tts
        self.stats = CacheStats()
        self._lock = threading.Lock()  # stats only: files are safe without it

    def path(self, text: str, rate_hz: int) -> Path:
        return self._path([self.tts.voice_id, rate_hz, text])

    def has(self, text: str, rate_hz: int) -> bool:
        return self._read(self.path(text, rate_hz), rate_hz) is not None

    def get(self, text: str, rate_hz: int) -> bytes:
        """The prompt's PCM at ``rate_hz``: from disk, or synthesised now and stored."""
        path = self.path(text, rate_hz)
        pcm = self._lookup(path, rate_hz)
        if pcm is None:
            started = time.perf_counter()
            pcm = self.tts.synthesize(text, rate_hz)
            with self._lock:
                self.stats.synthesis_s += time.perf_counter() - started
                self.stats.audio_s += len(pcm) / (2 * rate_hz)
            self._write(path, pcm, rate_hz)
        return pcm

    def get_wav(self, wav: Path, rate_hz: int) -> bytes:
        """A recorded prompt at ``rate_hz``; converted once per version of the file (size and mtime)."""
        try:
            st = wav.stat()
        except OSError as exc:
            raise TtsError(f"recorded prompt {wav}: {exc.strerror}", code="tts-wav-unreadable") from exc
        path = self._path(["wav", str(wav.resolve()), st.st_size, st.st_mtime_ns, rate_hz])
        pcm = self._lookup(path, rate_hz)
        if pcm is None:
            try:
                source, source_hz = read_wav(wav)
            except (OSError, EOFError, ValueError, wave.Error) as exc:  # not a file, truncated, not WAV, not 16-bit
                raise TtsError(f"recorded prompt {wav}: {exc}", code="tts-wav-unreadable") from exc
            pcm = resample(source, source_hz, rate_hz)
            self._write(path, pcm, rate_hz)
        return pcm

    # -- files --------------------------------------------------------------------------------

    def _path(self, key_parts: list) -> Path:
        key = hashlib.sha256(json.dumps(key_parts, ensure_ascii=False).encode()).hexdigest()
        return self.directory / key[:2] / f"{key}.pcm"

    def _lookup(self, path: Path, rate_hz: int) -> bytes | None:
        pcm = self._read(path, rate_hz)
        with self._lock:
            if pcm is not None:
                self.stats.hits += 1
            else:
                self.stats.misses += 1
                self.stats.corrupt += path.exists()
        return pcm

    @staticmethod
    def _read(path: Path, rate_hz: int) -> bytes | None:
        """The PCM of a complete, intact entry; None if it is missing or damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) < _HEADER.size:
            return None
        magic, rate, size, crc = _HEADER.unpack_from(data)
        pcm = data[_HEADER.size :]
        if magic != _MAGIC or rate != rate_hz or size != len(pcm) or crc != zlib.crc32(pcm):
            return None
        return pcm

    @staticmethod
    def _write(path: Path, pcm: bytes, rate_hz: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600, which is what we want: personalised
        # prompts say contacts' names.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_HEADER.pack(_MAGIC, rate_hz, len(pcm), zlib.crc32(pcm)))
                f.write(pcm)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- what the script will say ------------------------------------------------------------------

PromptKind = Literal["static", "contact", "runtime"]


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt of the script, and what its text depends on."""

    node: str | None  # None for script-level prompts (defaults, global intents)
    role: str  # where in the node (or script): say, reprompt, intents.no.say, defaults.no_match_reprompt...
    text: str | None  # the template (for a recording, its transcript)
    wav: Path | None  # a recording, played instead of synthesising the text
    contact_fields: tuple[str, ...] = ()  # filled from the contact
    known_values: Mapping[str, tuple[Scalar, ...]] = field(default_factory=dict)  # set mid-call by `set:` to one of these
    open_fields: tuple[str, ...] = ()  # captured slots: any value, known only mid-call
    field_defaults: Mapping[str, str | None] = field(default_factory=dict)  # the template's {name|default}s

    @property
    def where(self) -> str:
        return f"nodes.{self.node}.{self.role}" if self.node else self.role

    @property
    def kind(self) -> PromptKind:
        """static: the same audio in every call; contact: per contact; runtime: depends on what happens in the call."""
        if self.known_values or self.open_fields:
            return "runtime"
        return "contact" if self.contact_fields else "static"


def script_prompts(graph: ScriptGraph) -> list[PromptTemplate]:
    """Every prompt the script can say, classified by what its text depends on."""
    script = graph.dialplan.script
    sources = _ValueSources.of(graph)
    found: list[tuple[str | None, str, Prompt]] = [
        (None, "defaults.no_match_reprompt", script.defaults.no_match_reprompt),
        (None, "defaults.no_input_reprompt", script.defaults.no_input_reprompt),
    ]
    found += [(None, f"global_intents.{name}.say", route.say) for name, route in script.global_intents.items() if route.say]
    for node_id, compiled in graph.nodes.items():
        node = compiled.node
        own = [("say", node.say), ("reprompt", node.reprompt), ("on_no_input.reprompt", node.on_no_input.reprompt), ("on_no_match.reprompt", node.on_no_match.reprompt)]
        own += [(f"intents.{name}.say", route.say) for name, route in node.intents.items()]
        own += [(f"dtmf.{key}.say", route.say) for key, route in node.dtmf.items()]
        found += [(node_id, role, prompt) for role, prompt in own if prompt]
    return [sources.classify(node_id, role, prompt, graph.base_dir) for node_id, role, prompt in found]


@dataclass(frozen=True)
class _ValueSources:
    """Where each template name gets its value during a call (the engine's order: contact < variables < slots)."""

    contact: frozenset[str]
    variables: frozenset[str]
    set_values: dict[str, tuple[Scalar, ...]]
    slots: frozenset[str]

    @classmethod
    def of(cls, graph: ScriptGraph) -> _ValueSources:
        script = graph.dialplan.script
        holders: list = list(script.global_intents.values())  # nodes and routes: both have set and capture
        for compiled in graph.nodes.values():
            node = compiled.node
            holders.append(node)
            holders += list(node.intents.values()) + list(node.dtmf.values())
        set_values: dict[str, tuple[Scalar, ...]] = {}
        for holder in holders:
            for name, value in holder.set.items():
                if value not in set_values.get(name, ()):
                    set_values[name] = set_values.get(name, ()) + (value,)
        return cls(
            contact=frozenset(graph.dialplan.campaign.contact_fields) | frozenset(BUILTIN_FIELDS),
            variables=frozenset(script.variables),
            set_values=set_values,
            slots=frozenset(h.capture.slot for h in holders if h.capture),
        )

    def classify(self, node_id: str | None, role: str, prompt: Prompt, base_dir: Path) -> PromptTemplate:
        if prompt.wav:
            return PromptTemplate(node_id, role, prompt.text, base_dir / prompt.wav)
        fields = template_fields(prompt.text or "")
        names = list(dict.fromkeys(name for name, _ in fields))
        return PromptTemplate(
            node_id,
            role,
            prompt.text,
            None,
            # A script variable hides the contact field of the same name from the first word on.
            contact_fields=tuple(n for n in names if n in self.contact and n not in self.variables),
            known_values={n: self.set_values[n] for n in names if n in self.set_values},
            open_fields=tuple(n for n in names if n in self.slots),
            field_defaults={name: default for name, default in fields},
        )


# --- rendering ahead -----------------------------------------------------------------------------

MAX_VARIANTS = 32  # per template and contact; a template with more is left to mid-call synthesis

_KEEP = object()  # "no `set:` has happened yet": the value the call started with


@dataclass(frozen=True)
class PrerenderFailure:
    where: str
    contact: int  # index in the contacts given
    message: str


@dataclass
class PrerenderReport:
    templates: int = 0
    contacts: int = 0
    rendered: int = 0  # distinct prompts (texts and recordings) now in the cache
    synthesized: int = 0  # of those, how many had to be synthesised or converted (the rest were cached already)
    duplicates: int = 0  # renderings that gave a text already done (the same greeting for two contacts...)
    seconds: float = 0.0
    synthesis_s: float = 0.0
    audio_s: float = 0.0
    midcall: list[PromptTemplate] = field(default_factory=list)  # may need a text only known mid-call
    failures: list[PrerenderFailure] = field(default_factory=list)  # a contact lacks a value a prompt needs


def prerender(graph: ScriptGraph, cache: PromptCache, rate_hz: int, contacts: Iterable[Mapping[str, object]]) -> PrerenderReport:
    """Put every prompt the calls to ``contacts`` can know in advance into ``cache``.

    ``contacts`` is consumed once, so a generator over a large file works.
    """
    started = time.perf_counter()
    misses, synthesis_s, audio_s = cache.stats.misses, cache.stats.synthesis_s, cache.stats.audio_s
    templates = script_prompts(graph)
    report = PrerenderReport(templates=len(templates), midcall=[t for t in templates if t.open_fields or _too_many(t)])
    done: set[tuple[str, str]] = set()

    def ensure(template: PromptTemplate, values: Mapping[str, object]) -> None:
        for text in _variants(template, values):
            if ("text", text) in done:
                report.duplicates += 1
            else:
                done.add(("text", text))
                cache.get(text, rate_hz)

    variables = dict(graph.dialplan.script.variables)
    for template in templates:
        if template.wav:
            if ("wav", str(template.wav)) not in done:
                done.add(("wav", str(template.wav)))
                cache.get_wav(template.wav, rate_hz)
        elif not template.contact_fields:
            ensure(template, variables)
    personal = [t for t in templates if not t.wav and t.contact_fields]
    field_defaults = {k: f.default for k, f in graph.dialplan.campaign.contact_fields.items() if f.default is not None}
    for index, contact in enumerate(contacts):
        report.contacts += 1
        # The values a call starts with, built as the engine builds them (variables win over contact fields).
        values = {**field_defaults, **{k: v for k, v in contact.items() if v not in (None, "")}, **variables}
        for template in personal:
            try:
                ensure(template, values)
            except ScriptError as exc:
                report.failures.append(PrerenderFailure(template.where, index, str(exc)))

    report.rendered = len(done)
    report.synthesized = cache.stats.misses - misses
    report.synthesis_s = cache.stats.synthesis_s - synthesis_s
    report.audio_s = cache.stats.audio_s - audio_s
    report.seconds = time.perf_counter() - started
    return report


def _too_many(template: PromptTemplate) -> bool:
    bound = 1
    for values in template.known_values.values():
        bound *= len(values) + 1  # each literal, or the starting value
    return bound > MAX_VARIANTS


def _variants(template: PromptTemplate, values: Mapping[str, object]) -> Iterable[str]:
    """Every text ``template`` can render to in a call that starts with ``values``.

    A name set mid-call takes each of its literal values, or keeps its starting
    value; a captured slot keeps only its starting value (the rest are unknowable).
    An option that leaves a name empty where the template has no default for it
    would fail in the call too, so it is left out.
    """
    if _too_many(template):
        return
    names = list(template.known_values) + [n for n in template.open_fields if n not in template.known_values]
    axes = []
    for name in names:
        has_default = template.field_defaults.get(name) is not None
        options: list[object] = [v for v in template.known_values.get(name, ()) if v not in (None, "") or has_default]
        if values.get(name) not in (None, "") or has_default:
            options.append(_KEEP)
        axes.append(options)
    for combo in itertools.product(*axes):
        overrides = {name: value for name, value in zip(names, combo) if value is not _KEEP}
        yield render(template.text or "", {**values, **overrides}, where=template.where)
