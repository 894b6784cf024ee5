"""The script as a graph: checks over the whole graph, and the compiled form the engine runs.

The checks read the raw YAML data rather than validated models, so that they
still run (and report) when pydantic has rejected some node: `voicebot validate`
prints every problem in one pass.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.config import SYSTEM_OUTCOMES, Confirm, Dialplan, Node, Prompt, Route
from voicebot.script.intents import IntentMatcher, IntentSpec
from voicebot.script.slot_phrases import slot_phrases
from voicebot.script.templates import template_fields, template_syntax_error
from voicebot.yamlfile import Loc, Problem, YamlFile, plain

BUILTIN_FIELDS = ("phone",)  # every contact has a number


# --- checks -------------------------------------------------------------------------------


def check_graph(doc: YamlFile) -> list[Problem]:
    """Graph-level problems of a dialplan file (best effort on partly invalid data)."""
    data = plain(doc.data)
    if not isinstance(data, dict):
        return []
    script = _dict(data.get("script"))
    nodes = _dict(script.get("nodes"))
    if not nodes:
        return []
    problems: list[Problem] = []
    ids = [str(k) for k in nodes]

    def unknown_node(loc: Loc, target: Any) -> None:
        hint = difflib.get_close_matches(str(target), ids, n=1, cutoff=0.6)
        msg = f"unknown node '{target}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        problems.append(doc.problem(loc, msg, "unknown-node"))

    start = script.get("start")
    if isinstance(start, str) and start not in nodes:
        unknown_node(("script", "start"), start)

    edges: dict[str, set[str]] = {}
    for node_id, raw in nodes.items():
        edges[node_id] = set()
        for loc, target in _node_edges(node_id, _dict(raw)):
            if target in nodes:
                edges[node_id].add(target)
            else:
                unknown_node(loc, target)

    listening = {n for n, raw in nodes.items() if _listens(_dict(raw))}
    # Global intents and the script fallback can fire from any node that listens.
    anywhere: set[str] = set()
    global_routes = _dict(script.get("global_intents"))
    for name, route in global_routes.items():
        target = _route_next(route)
        if target is None:
            continue
        if target in nodes:
            anywhere.add(target)
        else:
            unknown_node(
                ("script", "global_intents", name, "next") if isinstance(route, dict) else ("script", "global_intents", name), target
            )
    fallback = script.get("fallback")
    if isinstance(fallback, str):
        if fallback in nodes:
            anywhere.add(fallback)
        else:
            unknown_node(("script", "fallback"), fallback)

    problems += _check_intent_names(doc, script, nodes)
    problems += _check_operators(doc, data, nodes)

    if isinstance(start, str) and start in nodes:
        reached = _reach(start, lambda n: edges[n] | (anywhere if n in listening else set()))
        for node_id in nodes:
            if node_id not in reached:
                problems.append(
                    doc.problem(("script", "nodes", node_id), f"node '{node_id}' is never reached from '{start}'", "unreachable-node")
                )
        terminal = {n for n, raw in nodes.items() if _ends_here(_dict(raw))}
        dead_ends = {n for n in nodes if not edges[n] and n not in terminal}
        # Only explicit edges count as a way out: a script must not rely on the
        # person asking for a human to ever end.
        reverse: dict[str, set[str]] = {n: set() for n in nodes}
        for src, dsts in edges.items():
            for dst in dsts:
                reverse[dst].add(src)
        can_end = _reach_many(terminal, lambda n: reverse[n])
        for node_id in nodes:
            if node_id not in reached or node_id in can_end:
                continue
            if node_id in dead_ends:
                why = "it has no way on: give it intents, next, hangup or transfer"
            elif _reach(node_id, lambda n: edges[n]) & dead_ends:
                continue  # the dead end it leads to is the mistake, reported there
            else:
                why = "every path from it loops back without reaching a hangup or transfer"
            problems.append(doc.problem(("script", "nodes", node_id), f"node '{node_id}' has no way out: {why}", "no-way-out"))

    problems += _check_templates(doc, data, script, nodes)
    problems += _check_outcomes(doc, data, script, nodes)
    problems += _check_wavs(doc, nodes)
    return problems


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _listens(raw: dict) -> bool:
    return bool(raw.get("intents") or raw.get("dtmf") or raw.get("capture"))


def _ends_here(raw: dict) -> bool:
    """The node itself, or one of its routes, hangs up or hands off."""
    if raw.get("hangup") or raw.get("transfer"):
        return True
    return any(isinstance(r, dict) and r.get("hangup") for key in ("intents", "dtmf") for r in _dict(raw.get(key)).values())


def _route_next(route: Any) -> str | None:
    if isinstance(route, str):
        return route
    if isinstance(route, dict) and isinstance(route.get("next"), str):
        return route["next"]
    return None


def _node_edges(node_id: str, raw: dict) -> Iterator[tuple[Loc, str]]:
    base: Loc = ("script", "nodes", node_id)
    for key in ("next", "on_transfer_fail"):
        if isinstance(raw.get(key), str):
            yield base + (key,), raw[key]
    for key in ("capture", "on_no_input", "on_no_match"):
        if isinstance(_dict(raw.get(key)).get("next"), str):
            yield base + (key, "next"), raw[key]["next"]
    for key in ("intents", "dtmf"):
        for name, route in _dict(raw.get(key)).items():
            target = _route_next(route)
            if target is not None:
                yield (base + (key, name, "next") if isinstance(route, dict) else base + (key, name)), target


def _reach(start: str, successors) -> set[str]:
    return _reach_many({start}, successors)


def _reach_many(starts: set[str], successors) -> set[str]:
    seen = set(starts)
    todo = deque(starts)
    while todo:
        for nxt in successors(todo.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _has_phrases(route: Any) -> bool:
    return isinstance(route, dict) and bool(route.get("phrases") or route.get("keywords"))


def _check_intent_names(doc: YamlFile, script: dict, nodes: dict) -> list[Problem]:
    problems = []
    library = _dict(script.get("intents"))
    known = list(library)

    def check(loc: Loc, name: str, route: Any) -> None:
        if name in library or _has_phrases(route):
            return
        hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        msg = f"intent '{name}' has no phrases: define it under script.intents or give phrases/keywords here"
        problems.append(doc.problem(loc, msg + (f" (did you mean '{hint[0]}'?)" if hint else ""), "unknown-intent"))

    for name, route in _dict(script.get("global_intents")).items():
        check(("script", "global_intents", name), str(name), route)
    globals_ = list(_dict(script.get("global_intents")))
    for node_id, raw in nodes.items():
        raw = _dict(raw)
        for name, route in _dict(raw.get("intents")).items():
            check(("script", "nodes", node_id, "intents", name), str(name), route)
        allowed = raw.get("global_intents")
        if isinstance(allowed, list):
            for i, name in enumerate(allowed):
                if name not in globals_:
                    problems.append(
                        doc.problem(("script", "nodes", node_id, "global_intents", i), f"unknown global intent '{name}'", "unknown-intent")
                    )
    return problems


def _check_operators(doc: YamlFile, data: dict, nodes: dict) -> list[Problem]:
    operators = list(_dict(data.get("operators")))
    problems = []
    for node_id, raw in nodes.items():
        target = _dict(raw).get("transfer")
        if isinstance(target, str) and target not in operators:
            hint = difflib.get_close_matches(target, operators, n=1, cutoff=0.6)
            msg = f"unknown operator '{target}'" + (f" (did you mean '{hint[0]}'?)" if hint else " (define it under operators)")
            problems.append(doc.problem(("script", "nodes", node_id, "transfer"), msg, "unknown-operator"))
    return problems


def _prompts(script: dict, nodes: dict) -> Iterator[tuple[Loc, str]]:
    """Every prompt text in the script with its location."""

    def text_of(loc: Loc, prompt: Any) -> Iterator[tuple[Loc, str]]:
        if isinstance(prompt, str):
            yield loc, prompt
        elif isinstance(prompt, dict) and isinstance(prompt.get("text"), str):
            yield loc + ("text",), prompt["text"]

    defaults = _dict(script.get("defaults"))
    for key in ("no_match_reprompt", "no_input_reprompt"):
        yield from text_of(("script", "defaults", key), defaults.get(key))
    for name, route in _dict(script.get("global_intents")).items():
        yield from text_of(("script", "global_intents", name, "say"), _dict(route).get("say"))
    for node_id, raw in nodes.items():
        raw = _dict(raw)
        base: Loc = ("script", "nodes", node_id)
        for key in ("say", "reprompt"):
            yield from text_of(base + (key,), raw.get(key))
        for key in ("on_no_input", "on_no_match"):
            yield from text_of(base + (key, "reprompt"), _dict(raw.get(key)).get("reprompt"))
        for key in ("intents", "dtmf"):
            for name, route in _dict(raw.get(key)).items():
                yield from text_of(base + (key, name, "say"), _dict(route).get("say"))


def _routes(script: dict, nodes: dict) -> Iterator[dict]:
    yield from (_dict(r) for r in _dict(script.get("global_intents")).values())
    for raw in nodes.values():
        raw = _dict(raw)
        yield raw
        for key in ("intents", "dtmf"):
            yield from (_dict(r) for r in _dict(raw.get(key)).values())


def _check_templates(doc: YamlFile, data: dict, script: dict, nodes: dict) -> list[Problem]:
    campaign = _dict(data.get("campaign"))
    fields = campaign.get("contact_fields")
    names = set(BUILTIN_FIELDS)
    names |= set(fields) if isinstance(fields, (dict, list)) else set()
    names |= set(_dict(script.get("variables")))
    for holder in _routes(script, nodes):
        names |= set(_dict(holder.get("set")))
        capture = _dict(holder.get("capture"))
        if isinstance(capture.get("slot"), str):
            names.add(capture["slot"])
    problems = []
    voicemail = _dict(data.get("voicemail")).get("message")
    extra = [(("voicemail", "message"), voicemail)] if isinstance(voicemail, str) else []
    for loc, text in [*_prompts(script, nodes), *extra]:
        syntax = template_syntax_error(text)
        if syntax:
            problems.append(doc.problem(loc, syntax, "template-syntax"))
            continue
        for name, _default in template_fields(text):
            if name not in names:
                hint = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
                msg = f"template variable {{{name}}} is not a contact field, variable or slot" + (
                    f" (did you mean {{{hint[0]}}}?)" if hint else ""
                )
                problems.append(doc.problem(loc, msg, "unknown-template-variable"))
    return problems


def script_outcomes(script: dict, nodes: dict) -> set[str]:
    return {h["hangup"] for h in _routes(script, nodes) if isinstance(h.get("hangup"), str)}


def _check_outcomes(doc: YamlFile, data: dict, script: dict, nodes: dict) -> list[Problem]:
    known = SYSTEM_OUTCOMES | script_outcomes(script, nodes)
    delays = _dict(_dict(_dict(data.get("campaign")).get("retry")).get("delays"))
    problems = []
    for outcome in delays:
        if outcome not in known:
            hint = difflib.get_close_matches(str(outcome), sorted(known), n=1, cutoff=0.6)
            msg = f"retry delay for unknown outcome '{outcome}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            problems.append(doc.problem(("campaign", "retry", "delays", outcome), msg, "unknown-outcome"))
    return problems


def _check_wavs(doc: YamlFile, nodes: dict) -> list[Problem]:
    problems = []
    for node_id, raw in nodes.items():
        for key in ("say", "reprompt"):
            wav = _dict(_dict(raw).get(key)).get("wav")
            if isinstance(wav, str) and not (doc.path.parent / wav).is_file():
                problems.append(
                    doc.problem(
                        ("script", "nodes", node_id, key, "wav"), f"recording '{wav}' not found next to the dialplan", "missing-file"
                    )
                )
    return problems


# --- the compiled graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledNode:
    id: str
    node: Node
    routes: dict[str, Route]  # local intents, resolved
    global_routes: dict[str, Route]  # globals that apply here
    matcher: IntentMatcher | None
    barge_in: bool
    no_input_timeout_s: float
    max_no_input: int
    max_no_match: int
    no_input_reprompt: Prompt
    no_match_reprompt: Prompt
    min_confidence: float
    # intents asked about before they are acted on, when heard with less confidence than ``below``
    confirms: dict[str, Confirm] = field(default_factory=dict)

    language: str = "en"

    @property
    def listens(self) -> bool:
        """The node waits for an answer: it neither hands the call over, hangs up nor moves on by itself."""
        n = self.node
        return not (n.transfer or n.hangup or n.next)

    def vocabulary(self) -> list[str]:
        """Every phrase this node expects (intents, globals, what its capture slot may be), for a
        restricted ASR grammar; empty when the node takes free text (no grammar)."""
        capture = self.node.capture
        slot = slot_phrases(capture.type, self.language) if capture else ()
        if slot is None:
            return []
        return list(dict.fromkeys([*(self.matcher.vocabulary() if self.matcher else []), *slot]))

    def route_for(self, intent: str) -> tuple[Route, bool]:
        if intent in self.routes:
            return self.routes[intent], False
        return self.global_routes[intent], True


# What answers "just to be sure: ...?", besides the script's own "yes"/"no" intents when it has them.
_CONFIRM_ANSWERS = {
    "en": {
        "yes": (
            "yes",
            "yeah",
            "yep",
            "yes please",
            "that's right",
            "correct",
            "exactly",
            "right",
            "sure",
            "yes i did",
            "that is what i said",
            "absolutely",
            "uh-huh",
        ),
        "no": ("no", "nope", "no i did not", "that's not what i said", "not at all", "wrong", "that's wrong", "no no", "i didn't say that"),
    },
    "ru": {
        "yes": ("да", "ага", "угу", "верно", "правильно", "да да", "именно", "конечно", "точно", "да именно так"),
        "no": ("нет", "неа", "не так", "нет я не это сказал", "неправильно", "нет нет", "я не это имел в виду"),
    },
}


@dataclass
class ScriptGraph:
    dialplan: Dialplan
    base_dir: Path
    nodes: dict[str, CompiledNode] = field(default_factory=dict)
    confirm_matcher: IntentMatcher | None = None  # yes / no to a confirmation question

    @property
    def start(self) -> str:
        return self.dialplan.script.start

    @property
    def language(self) -> str:
        return self.dialplan.speech.language

    @classmethod
    def build(cls, dialplan: Dialplan, base_dir: Path = Path(".")) -> ScriptGraph:
        script = dialplan.script
        d = script.defaults
        graph = cls(dialplan, base_dir)
        lang = dialplan.speech.language.split("-")[0].lower()
        answers = _CONFIRM_ANSWERS.get(lang, {"yes": (), "no": ()})
        specs = [
            IntentSpec(k, tuple(dict.fromkeys((*answers[k], *(script.intents[k].phrases if k in script.intents else ())))))
            for k in ("yes", "no")
        ]
        graph.confirm_matcher = IntentMatcher(specs, dialplan.speech.language, d.threshold) if all(x.phrases for x in specs) else None
        for node_id, node in script.nodes.items():
            if node.global_intents is True:
                globals_ = dict(script.global_intents)
            elif node.global_intents is False:
                globals_ = {}
            else:
                globals_ = {k: v for k, v in script.global_intents.items() if k in node.global_intents}
            specs = [_spec(name, route, script, False) for name, route in node.intents.items()]
            specs += [_spec(name, route, script, True) for name, route in globals_.items() if name not in node.intents]
            matcher = IntentMatcher(specs, dialplan.speech.language, d.threshold) if node.listens and specs else None
            graph.nodes[node_id] = CompiledNode(
                id=node_id,
                node=node,
                routes=dict(node.intents),
                global_routes={k: v for k, v in globals_.items() if k not in node.intents},
                matcher=matcher,
                barge_in=d.barge_in if node.barge_in is None else node.barge_in,
                no_input_timeout_s=node.on_no_input.timeout_s or d.no_input_timeout_s,
                max_no_input=d.max_no_input if node.on_no_input.max is None else node.on_no_input.max,
                max_no_match=d.max_no_match if node.on_no_match.max is None else node.on_no_match.max,
                no_input_reprompt=node.on_no_input.reprompt or node.reprompt or d.no_input_reprompt,
                no_match_reprompt=node.on_no_match.reprompt or d.no_match_reprompt,
                min_confidence=d.min_confidence if node.min_confidence is None else node.min_confidence,
                confirms=_confirms(node, globals_, script),
                language=dialplan.speech.language,
            )
        return graph


def _confirms(node: Node, globals_: dict[str, Route], script) -> dict[str, Confirm]:
    """Each intent's own confirmation, or the default one for an answer that would end the call."""
    out = {}
    for name, route in {**globals_, **node.intents}.items():
        lib = script.intents.get(name)
        confirm = route.confirm or (lib.confirm if lib else None)
        if confirm is None and script.defaults.confirm_below > 0 and _ends_call(route, script.nodes):
            confirm = Confirm(below=script.defaults.confirm_below)
        if confirm is not None:
            out[name] = confirm
    return out


def _ends_call(route: Route, nodes: dict[str, Node]) -> bool:
    """The route hangs up, at once or after nodes that only speak (no listening, no transfer)."""
    if route.hangup:
        return True
    seen: set[str] = set()
    target = route.next
    while target and target in nodes and target not in seen:
        seen.add(target)
        n = nodes[target]
        if n.hangup:
            return True
        if n.transfer or not n.next:
            return False
        target = n.next
    return False


def _spec(name: str, route: Route, script, is_global: bool) -> IntentSpec:
    lib = script.intents.get(name)
    phrases = (lib.phrases if lib else ()) + route.phrases
    keywords = (lib.keywords if lib else ()) + route.keywords
    threshold = route.threshold or (lib.threshold if lib else None)
    priority = route.priority if route.priority is not None else (lib.priority if lib else 0)
    return IntentSpec(name, phrases, keywords, threshold, priority, is_global)
