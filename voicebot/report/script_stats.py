"""Script analytics: where conversations go, where people answer what the script did not expect.

Computed over conversations only (answered, not an answering machine): a machine
"reaching" the greeting says nothing about the script. Per node: how many calls
reached it, what the engine made of each answer there (an intent, a capture, no
match, no input), where calls went next; along the main path, the drop-off; at
objections, what people said and how the calls ended; and the exact phrases no
intent matched, for the script author to add.

Each answer's classification comes from the engine's own decisions stored in the
call record (``record["decisions"]``), not from re-matching the text later: a
dialplan edited since the calls were made would otherwise rewrite history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from voicebot.report.analytics import ratio
from voicebot.report.script_graph import ScriptShape
from voicebot.report.source import CallRow, CampaignData

NO_MATCH = ("no_match", "low_confidence")
END = "(call ended)"


@dataclass(frozen=True)
class NodeStats:
    node: str
    kind: str  # listen | say | hangup | transfer | unknown (not in the dialplan given)
    reached: int  # conversations that entered it at least once
    visits: int
    answers: int  # things the person did there (heard, silence, keys)
    no_match: int  # no intent matched, or recognised with too low a confidence
    no_input: int
    results: dict[str, int]  # intent name, "capture", "no_match", "no_input", ... -> count
    exits: dict[str, int]  # the next node, or END

    @property
    def no_match_rate(self) -> float | None:
        return ratio(self.no_match, self.answers)

    @property
    def no_input_rate(self) -> float | None:
        return ratio(self.no_input, self.answers)


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int
    node: str | None = None  # None for the steps before the script (dialled, answered...)


@dataclass(frozen=True)
class ObjectionStats:
    node: str
    reached: int
    came_from: dict[str, int]  # "node: intent" that led here
    answers: dict[str, int]  # what the engine made of the person's answer here
    next_nodes: dict[str, int]
    outcomes: dict[str, int]  # how the calls that met this objection ended
    goals: int  # of those, calls that still reached a goal


@dataclass(frozen=True)
class UnmatchedPhrase:
    node: str
    text: str
    count: int
    result: str  # no_match | low_confidence
    calls: tuple[str, ...]  # attempt ids (a few), to listen to


@dataclass(frozen=True)
class ScriptAnalytics:
    conversations: int
    with_decisions: int  # conversations whose records hold the engine's decisions
    nodes: list[NodeStats]  # dialplan order, then nodes only the records know
    never_reached: list[str]
    main_path: list[str]
    funnel: list[FunnelStep]
    objections: list[ObjectionStats]
    unmatched: list[UnmatchedPhrase]
    intents: list[str] = field(default_factory=list)  # every result label seen, for the heat map's columns

    def node(self, node_id: str) -> NodeStats:
        return next(n for n in self.nodes if n.node == node_id)


def is_objection(node: str) -> bool:
    """Objection-handling nodes, by the naming convention of the example dialplans."""
    return node.lower().startswith("objection")


def script_analytics(
    data: CampaignData,
    shape: ScriptShape | None,
    goals: Iterable[str],
    objections: Iterable[str] | None = None,
    main_path: Iterable[str] | None = None,
    unmatched_examples: int = 5,
) -> ScriptAnalytics:
    goals = tuple(goals)
    calls = [c for c in data.calls if c.ended and c.conversation]
    order = list(shape.nodes) if shape else []
    for call in calls:
        for node in call.path:
            if node not in order:
                order.append(node)
    with_decisions = [c for c in calls if c.decisions is not None]
    nodes = [_node_stats(node, shape, calls) for node in order]
    never = [n.node for n in nodes if n.reached == 0] if shape else []
    wanted = list(objections) if objections is not None else [n for n in order if is_objection(n)]
    main = list(main_path) if main_path else shape.main_path(goals, set(wanted).__contains__) if shape else []
    if not main:
        main = _most_common_path(calls, goals)
    label_counts: Counter = Counter()
    for n in nodes:
        label_counts.update(n.results)
    return ScriptAnalytics(
        conversations=len(calls),
        with_decisions=len(with_decisions),
        nodes=nodes,
        never_reached=never,
        main_path=main,
        funnel=_funnel(data, calls, main),
        objections=sorted((_objection(n, calls, goals) for n in wanted), key=lambda o: (-o.reached, o.node)),
        unmatched=_unmatched(calls, unmatched_examples),
        intents=[label for label, _ in label_counts.most_common()],
    )


def _node_stats(node: str, shape: ScriptShape | None, calls: list[CallRow]) -> NodeStats:
    reached = visits = 0
    results: Counter = Counter()
    exits: Counter = Counter()
    for call in calls:
        steps = [i for i, n in enumerate(call.path) if n == node]
        if steps:
            reached += 1
            visits += len(steps)
            for i in steps:
                exits[call.path[i + 1] if i + 1 < len(call.path) else END] += 1
        for d in call.decisions or ():
            if d.get("node") == node:
                results[_label(d)] += 1
    answers = sum(results.values()) - results["transfer_failed"]
    kind = shape.kinds.get(node, "unknown") if shape else "unknown"
    return NodeStats(
        node=node,
        kind=kind,
        reached=reached,
        visits=visits,
        answers=answers,
        no_match=sum(results[r] for r in NO_MATCH),
        no_input=results["no_input"],
        results=dict(results.most_common()),
        exits=dict(exits.most_common()),
    )


def _label(decision: dict) -> str:
    result = decision.get("result") or "unknown"
    if result in ("intent", "global"):
        return decision.get("intent") or result
    return result


def _funnel(data: CampaignData, conversations: list[CallRow], main: list[str]) -> list[FunnelStep]:
    ended = [c for c in data.calls if c.ended]
    steps = [
        FunnelStep("dialled", len(ended)),
        FunnelStep("answered", sum(c.answered for c in ended)),
        FunnelStep("conversation", len(conversations)),
    ]
    # A call counts at a step if it passed every earlier step of the main path in order,
    # so detours (an objection, then back to the pitch) still count.
    for i, node in enumerate(main):
        prefix = main[: i + 1]
        steps.append(FunnelStep(node, sum(_passes(c.path, prefix) for c in conversations), node))
    return steps


def _passes(path: tuple[str, ...], steps: list[str]) -> bool:
    it = iter(path)
    return all(step in it for step in steps)


def _most_common_path(calls: list[CallRow], goals: tuple[str, ...]) -> list[str]:
    pool = [c for c in calls if c.outcome in goals] or calls
    counts = Counter(c.path for c in pool if c.path)
    if not counts:
        return []
    return list(min(counts.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))[0])


def _objection(node: str, calls: list[CallRow], goals: tuple[str, ...]) -> ObjectionStats:
    met = [c for c in calls if node in c.path]
    came_from: Counter = Counter()
    answers: Counter = Counter()
    next_nodes: Counter = Counter()
    for call in met:
        decisions = call.decisions or []
        for i, n in enumerate(call.path):
            if n != node:
                continue
            if i > 0:
                came_from[f"{call.path[i - 1]}: {_trigger(decisions, call.path[i - 1])}"] += 1
            next_nodes[call.path[i + 1] if i + 1 < len(call.path) else END] += 1
        answers.update(_label(d) for d in decisions if d.get("node") == node)
    return ObjectionStats(
        node=node,
        reached=len(met),
        came_from=dict(came_from.most_common()),
        answers=dict(answers.most_common()),
        next_nodes=dict(next_nodes.most_common()),
        outcomes=dict(Counter(c.outcome or "unknown" for c in met).most_common()),
        goals=sum(c.outcome in goals for c in met),
    )


def _trigger(decisions: list[dict], node: str) -> str:
    """What moved the call on from ``node``: the last decision made there that led somewhere."""
    for d in reversed(decisions):
        if d.get("node") == node and d.get("result") not in ("no_input", *NO_MATCH):
            return _label(d)
    return "?"


def _unmatched(calls: list[CallRow], examples: int) -> list[UnmatchedPhrase]:
    groups: dict[tuple[str, str], list] = {}
    for call in calls:
        for d in call.decisions or ():
            if d.get("result") not in NO_MATCH:
                continue
            text = str(d.get("text") or "").strip()
            if d.get("kind") == "dtmf":
                text = f"[DTMF {text}]"
            key = (str(d.get("node")), " ".join(text.lower().split()))
            entry = groups.setdefault(key, [0, Counter(), [], text])
            entry[0] += 1
            entry[1][d["result"]] += 1
            if call.attempt_id not in entry[2]:
                entry[2].append(call.attempt_id)
    phrases = [
        UnmatchedPhrase(node, first_seen, count, results.most_common(1)[0][0], tuple(ids[:examples]))
        for (node, _), (count, results, ids, first_seen) in groups.items()
    ]
    return sorted(phrases, key=lambda p: (-p.count, p.node, p.text))
