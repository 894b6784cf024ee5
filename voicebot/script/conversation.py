"""Drive a script engine with text: used by `voicebot chat`, script tests and the text demo.

Customer turns are lines of text, or one of: silence, a DTMF key, hanging up.
A transfer is answered at once (as if the operator picked up) unless told to fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from voicebot.script.engine import (
    Action,
    CallerHangup,
    Dtmf,
    Event,
    Hangup,
    Heard,
    Listen,
    Say,
    ScriptEngine,
    ScriptResult,
    SendDtmf,
    Silence,
    Transfer,
    TransferResult,
)
from voicebot.script.graph import ScriptGraph


@dataclass(frozen=True)
class CustomerTurn:
    """What the person does in one turn."""

    text: str | None = None
    confidence: float = 1.0
    silence: bool = False
    dtmf: str | None = None
    hangup: bool = False

    def events(self) -> list[Event]:
        if self.hangup:
            return [CallerHangup()]
        if self.silence:
            return [Silence()]
        if self.dtmf is not None:
            return [Dtmf(d) for d in self.dtmf]
        return [Heard(self.text or "", self.confidence)]

    def describe(self) -> str:
        if self.hangup:
            return "(hangs up)"
        if self.silence:
            return "(silence)"
        if self.dtmf is not None:
            return f"(presses {self.dtmf})"
        return f'"{self.text}"' + (f" (confidence {self.confidence})" if self.confidence != 1.0 else "")


def parse_typed_line(line: str) -> CustomerTurn:
    """A line typed in `voicebot chat`: text, an empty line or /silence, /dtmf KEYS, /hangup."""
    stripped = line.strip()
    if not stripped or stripped == "/silence":
        return CustomerTurn(silence=True)
    if stripped == "/hangup":
        return CustomerTurn(hangup=True)
    if stripped.startswith("/dtmf"):
        keys = stripped.removeprefix("/dtmf").strip()
        if not keys or any(k not in "0123456789*#" for k in keys):
            raise ValueError(f"'{stripped}': /dtmf takes keys 0-9, * and #")
        return CustomerTurn(dtmf=keys)
    if stripped.startswith("/"):
        raise ValueError(f"unknown command '{stripped}': use /silence, /dtmf KEYS or /hangup")
    return CustomerTurn(text=stripped)


@dataclass
class Step:
    """One exchange: the turn (None for the opening) and what the engine did."""

    turn: CustomerTurn | None
    actions: list[Action]
    path_before: int  # len(path) before this step
    node_before: str | None


@dataclass
class TextConversation:
    graph: ScriptGraph
    contact: Mapping[str, object] = field(default_factory=dict)
    transfer_ok: bool = True
    engine: ScriptEngine = field(init=False)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = ScriptEngine(self.graph, self.contact)

    @property
    def finished(self) -> bool:
        return self.engine.finished

    @property
    def listening_at(self) -> str | None:
        return None if self.finished else self.engine.node.id

    def start(self) -> list[Action]:
        actions = self._settle(self.engine.start())
        self.steps.append(Step(None, actions, 0, None))
        return actions

    def send(self, turn: CustomerTurn) -> list[Action]:
        before, node = len(self.engine.path), self.engine.node.id
        actions: list[Action] = []
        for event in turn.events():
            actions += self._settle(self.engine.handle(event))
        self.steps.append(Step(turn, actions, before, node))
        return actions

    def result(self) -> ScriptResult:
        return self.engine.result()

    def _settle(self, actions: list[Action]) -> list[Action]:
        # A text conversation has no operator to wait for: answer the transfer now.
        out = list(actions)
        for action in actions:
            if isinstance(action, Transfer):
                reason = "" if self.transfer_ok else "operator did not answer"
                out += self._settle(self.engine.handle(TransferResult(self.transfer_ok, reason)))
        return out


def describe_action(action: Action) -> str:
    if isinstance(action, Say):
        return f"bot: {action.text}" if action.text else f"bot: [plays {action.wav}]"
    if isinstance(action, Listen):
        return f"  [listening at {action.node}]"
    if isinstance(action, Transfer):
        return f"  [transfer to {action.operator} <{action.uri}> by {action.mode}]"
    if isinstance(action, Hangup):
        return f"  [hang up: {action.outcome}]"
    if isinstance(action, SendDtmf):
        return f"  [press {action.digits}]"
    return f"  [{action}]"
