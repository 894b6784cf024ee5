"""What a script will say, rendered before the calls: prompt pre-rendering beside the campaign.

The campaign manager (and a remote worker on start) walks the script graph for
every prompt it can know in advance, static ones once and personalised ones per
contact, and puts their audio in the ``PromptCache`` that media workers read.
This walk lives here, not in ``speech/``, because speech engines must not know
the script (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from voicebot.config import Prompt, Scalar
from voicebot.errors import ScriptError
from voicebot.script.graph import BUILTIN_FIELDS, ScriptGraph
from voicebot.script.templates import render, template_fields
from voicebot.speech.prompt_cache import PromptCache

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
        own = [
            ("say", node.say),
            ("reprompt", node.reprompt),
            ("on_no_input.reprompt", node.on_no_input.reprompt),
            ("on_no_match.reprompt", node.on_no_match.reprompt),
        ]
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
    for index, contact in enumerate(contacts):
        report.contacts += 1
        values = start_values(graph, contact)
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


def start_values(graph: ScriptGraph, contact: Mapping[str, object]) -> dict[str, object]:
    """The values a call starts with, built as the engine builds them (variables win over contact fields)."""
    field_defaults = {k: f.default for k, f in graph.dialplan.campaign.contact_fields.items() if f.default is not None}
    return {**field_defaults, **{k: v for k, v in contact.items() if v not in (None, "")}, **graph.dialplan.script.variables}


# --- just in time: one contact's texts, and what to say when they are not ready ----------------------------


@dataclass(frozen=True)
class PersonalPrompts:
    """A script's personalised prompts, for rendering per contact just before the call."""

    graph: ScriptGraph
    templates: tuple[PromptTemplate, ...]

    @classmethod
    def of(cls, graph: ScriptGraph) -> PersonalPrompts:
        return cls(graph, tuple(t for t in script_prompts(graph) if not t.wav and t.contact_fields and not _too_many(t)))

    def texts(self, contact: Mapping[str, object]) -> list[str]:
        """Every text the contact's call can know before it starts, in script order, without repeats.
        A template this contact lacks a value for is left out: the call says its generic form."""
        values = start_values(self.graph, contact)
        out: dict[str, None] = {}
        for template in self.templates:
            try:
                out.update((text, None) for text in _variants(template, values))
            except ScriptError:
                continue
        return list(out)

    def generic(self, contact: Mapping[str, object]) -> dict[str, str]:
        """Each of the contact's personal texts -> the same prompt with no contact field filled in
        (``{first_name|there}`` says "there"): what the call says when the personal one is not rendered yet.
        A template whose fields have no default has no generic form and is left out."""
        personal = start_values(self.graph, contact)
        anonymous = start_values(self.graph, {})
        out: dict[str, str] = {}
        for template in self.templates:
            try:
                generic = list(_variants(template, anonymous))
                mine = list(_variants(template, personal))
            except ScriptError:
                continue
            if len(generic) == len(mine):  # the same mid-call options, in the same order
                out.update((text, other) for text, other in zip(mine, generic) if text != other)
        return out

    def generic_texts(self) -> list[str]:
        """The generic forms themselves: static, rendered once before the first call."""
        anonymous = start_values(self.graph, {})
        out: dict[str, None] = {}
        for template in self.templates:
            try:
                out.update((text, None) for text in _variants(template, anonymous))
            except ScriptError:
                continue
        return list(out)


def static_texts(graph: ScriptGraph) -> list[str]:
    """The texts ``prerender`` renders once for every call (no contact field in them)."""
    variables = dict(graph.dialplan.script.variables)
    out: dict[str, None] = {}
    for template in script_prompts(graph):
        if not template.wav and not template.contact_fields:
            try:
                out.update((text, None) for text in _variants(template, variables))
            except ScriptError:
                continue
    return list(out)
