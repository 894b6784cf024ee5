"""Script tests ("script CI"): conversations written as YAML, checked against the script.

    dialplan: ../demo_en.yaml          # optional; the command line may name it instead
    contact: {first_name: Anna}        # optional default for every test
    tests:
      - name: books a meeting
        turns: ["yes", "we use a spreadsheet", {silence: true}, {dtmf: "1"}, {hangup: true}]
        expect:
          outcome: meeting_booked
          path: [greeting, discovery, ...]     # the whole path, in order
          visits: [pitch]                      # nodes that must be on the path
          slots: {meeting_time: "tuesday 10:00"}
          variables: {meeting_time: "..."}
          bot_says: ["calendar invite"]        # substrings of some bot line

A failure names the test (file:line) and the step where the conversation left
the expected path: the node, the customer's turn, and what the matcher made of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from voicebot.config import Frozen, Scalar
from voicebot.errors import ConfigError
from voicebot.script.conversation import CustomerTurn, TextConversation
from voicebot.script.engine import Say
from voicebot.script.graph import ScriptGraph
from voicebot.yamlfile import YamlFile, load_yaml, plain, pydantic_problems


class TurnSpec(Frozen):
    say: str | None = None
    confidence: float = Field(1.0, ge=0, le=1)
    silence: bool = False
    dtmf: str | None = Field(None, pattern=r"^[0-9*#]+$")
    hangup: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"say": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one(self) -> TurnSpec:
        kinds = sum(bool(x) for x in (self.say is not None, self.silence, self.dtmf, self.hangup))
        if kinds != 1:
            raise ValueError("a turn is one of: a line of text (or say:), silence: true, dtmf: KEYS, hangup: true")
        return self

    def turn(self) -> CustomerTurn:
        return CustomerTurn(self.say, self.confidence, self.silence, self.dtmf, self.hangup)


class Expectation(Frozen):
    outcome: str | None = None
    path: tuple[str, ...] | None = None
    visits: tuple[str, ...] = ()
    slots: dict[str, str] = Field(default_factory=dict)
    variables: dict[str, Scalar] = Field(default_factory=dict)
    bot_says: tuple[str, ...] = ()


class ScriptTestCase(Frozen):
    name: str
    contact: dict[str, str] | None = None
    transfer: str = Field("ok", pattern="^(ok|fail)$")
    turns: tuple[TurnSpec, ...]
    expect: Expectation


class ScriptTestFile(Frozen):
    dialplan: str | None = None
    contact: dict[str, str] = Field(default_factory=dict)
    tests: tuple[ScriptTestCase, ...] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    where: str
    failures: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    outcome: str | None = None
    path: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class LoadedTests:
    doc: YamlFile
    spec: ScriptTestFile

    def dialplan_path(self) -> Path | None:
        return (self.doc.path.parent / self.spec.dialplan).resolve() if self.spec.dialplan else None


def load_tests(path: str | Path) -> LoadedTests:
    doc = load_yaml(path)
    try:
        spec = ScriptTestFile.model_validate(plain(doc.data))
    except ValidationError as exc:
        problems = pydantic_problems(doc, exc, ScriptTestFile)
        raise ConfigError(f"{path}: {len(problems)} error(s)\n" + "\n".join(map(str, problems)), problems) from None
    return LoadedTests(doc, spec)


def check_references(tests: LoadedTests, graph: ScriptGraph) -> list[str]:
    """Node names in expectations that the script does not have (a typo there would fail confusingly)."""
    errors = []
    for i, case in enumerate(tests.spec.tests):
        for key, names in (("path", case.expect.path or ()), ("visits", case.expect.visits)):
            for j, name in enumerate(names):
                if name not in graph.nodes:
                    errors.append(str(tests.doc.problem(("tests", i, "expect", key, j), f"unknown node '{name}'", "unknown-node")))
    return errors


def run_case(graph: ScriptGraph, case: ScriptTestCase, default_contact: dict[str, str], where: str) -> CaseResult:
    result = CaseResult(case.name, where)
    contact = {**default_contact, **(case.contact or {})}
    conv = TextConversation(graph, contact, transfer_ok=case.transfer == "ok")
    log = result.transcript
    path_cause: list[str] = []  # for each path entry, what led to it

    def record(actions, cause: str) -> None:
        for a in actions:
            if isinstance(a, Say):
                log.append(f"bot: {a.text}")
        path_cause.extend([cause] * (len(conv.engine.path) - len(path_cause)))

    record(conv.start(), "the call started")
    for n, spec in enumerate(case.turns, start=1):
        if conv.finished:
            result.failures.append(
                f"the call ended ({conv.engine.outcome}) after turn {n - 1}; turn {n} {spec.turn().describe()} and later were never heard"
            )
            break
        turn = spec.turn()
        node = conv.listening_at
        log.append(f"customer: {turn.describe()}")
        actions = conv.send(turn)
        last = conv.engine.turns[-1] if conv.engine.turns else None
        made = (
            f" → {last.result}" + (f" '{last.intent}' ({last.score})" if last and last.intent and last.score is not None else "")
            if last
            else ""
        )
        record(actions, f"turn {n} at '{node}': customer {turn.describe()}{made}")

    res = conv.result()
    result.outcome, result.path = res.outcome, list(res.path)
    exp = case.expect
    if exp.path is not None and tuple(res.path) != exp.path:
        i = next((k for k, (a, b) in enumerate(zip(res.path, exp.path)) if a != b), min(len(res.path), len(exp.path)))
        got = res.path[i] if i < len(res.path) else "(end of path)"
        want = exp.path[i] if i < len(exp.path) else "(end of path)"
        cause = path_cause[i] if i < len(path_cause) else (f"after {path_cause[-1]}" if path_cause else "")
        result.failures.append(
            f"path differs at step {i + 1}: expected '{want}', got '{got}'\n"
            f"      {cause}\n"
            f"      expected: {' → '.join(exp.path)}\n"
            f"      actual:   {' → '.join(res.path)}"
        )
    for name in exp.visits:
        if name not in res.path:
            result.failures.append(f"never reached '{name}'; path: {' → '.join(res.path)}")
    if exp.outcome is not None and res.outcome != exp.outcome:
        got = res.outcome or f"none yet (still listening at '{conv.listening_at}')"
        result.failures.append(f"outcome: expected '{exp.outcome}', got '{got}'")
    for key, want in exp.slots.items():
        if res.slots.get(key) != want:
            result.failures.append(f"slot {key}: expected {want!r}, got {res.slots.get(key)!r}")
    for key, want in exp.variables.items():
        if res.variables.get(key) != want:
            result.failures.append(f"variable {key}: expected {want!r}, got {res.variables.get(key)!r}")
    bot_lines = [line for line in log if line.startswith("bot: ")]
    for text in exp.bot_says:
        if not any(text.lower() in line.lower() for line in bot_lines):
            result.failures.append(f"the bot never said {text!r}")
    return result


def run_tests(graph: ScriptGraph, tests: LoadedTests) -> list[CaseResult]:
    out = []
    for i, case in enumerate(tests.spec.tests):
        line, _ = tests.doc.position(("tests", i))
        out.append(run_case(graph, case, tests.spec.contact, f"{tests.doc.path}:{line}"))
    return out
