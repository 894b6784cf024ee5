"""The conversation engine: a pure state machine over the compiled script graph.

It takes events (what the person said, silence, a DTMF key, a prompt finished,
a barge-in, the transfer result, the person hung up) and returns actions (say a
prompt, listen, transfer, hang up). No audio, SIP, clock or I/O: the caller owns
timers and playback, so the same engine runs in a call, in `voicebot chat`, in
script tests and in analytics replays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.config import Prompt, Route
from voicebot.errors import ScriptError
from voicebot.script.graph import CompiledNode, ScriptGraph
from voicebot.script.intents import IntentMatch
from voicebot.script.slots import extract_slot
from voicebot.script.templates import render

# --- events in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    """A final recognition result (or a typed line)."""

    text: str
    confidence: float = 1.0
    # what a recogniser restricted to the node's phrases heard, (text, confidence): taken only where it
    # sounds like ``text`` (two-pass recognition; see voicebot/speech/two_pass.py)
    alternatives: tuple[tuple[str, float], ...] = ()
    # the same alternatives, decoded only when asked for: when ``text`` matches none of the node's intents
    second_opinion: Callable[[], tuple[tuple[str, float], ...]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Silence:
    """The no-input timeout of the current Listen ran out."""


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class PromptDone:
    prompt_id: str
    played_ms: int | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class BargeIn:
    prompt_id: str
    at_ms: int | None = None


@dataclass(frozen=True)
class TransferResult:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class CallerHangup:
    pass


Event = Heard | Silence | Dtmf | PromptDone | BargeIn | TransferResult | CallerHangup

# --- actions out --------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    prompt_id: str
    node: str
    text: str | None
    wav: Path | None
    barge_in: bool


@dataclass(frozen=True)
class Listen:
    node: str
    vocabulary: tuple[str, ...]
    no_input_timeout_s: float
    dtmf: bool


@dataclass(frozen=True)
class Transfer:
    operator: str
    uri: str
    mode: str
    warm: bool
    node: str


@dataclass(frozen=True)
class Hangup:
    outcome: str


@dataclass(frozen=True)
class SendDtmf:
    """Press keys on the line (after the prompts before it have played): phone menus on the way to a person."""

    digits: str
    node: str


Action = Say | Listen | Transfer | Hangup | SendDtmf

# --- what the engine records --------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One thing the person did at a node, and what the engine made of it."""

    node: str
    kind: str  # heard | silence | dtmf
    text: str = ""
    confidence: float | None = None
    intent: str | None = None
    score: float | None = None
    # intent | global | capture | no_match | no_input | low_confidence | confirm (asked before acting on
    # ``intent``) | confirmed | not_confirmed (the answer to that question)
    result: str = ""


@dataclass(frozen=True)
class _Unconfirmed:
    """An intent heard with too little confidence to act on: asked about, waiting for yes or no."""

    intent: str
    route: Route
    is_global: bool
    text: str
    score: float


@dataclass(frozen=True)
class PromptPlay:
    prompt_id: str
    played_ms: int | None
    interrupted: bool


@dataclass
class ScriptResult:
    outcome: str | None
    path: list[str]
    slots: dict[str, str]
    variables: dict[str, object]
    turns: list[Turn]
    prompts: list[PromptPlay]
    transcript: list[tuple[str, str]]  # (bot|customer, text)
    operator: str | None = None


_MAX_CHAIN = 200  # nodes entered in one step before we call it a loop
# A grammar hypothesis is taken when the open-vocabulary text sounds this much like it (0..1), and
# never with more confidence than this share of the likeness.
_ALTERNATIVE_LIKENESS = 0.6
_ALTERNATIVE_DISCOUNT = 0.9
_AGREEMENT_CONFIDENCE = 0.9  # both passes found the same intent
_SHORT_WORDS = 2  # a grammar hypothesis this short may stand in for an open-vocabulary text it does not sound like
_UNSURE = 0.5
_SHORT_CONFIDENCE = 0.7
# A thin match: a short phrase in a long answer the recogniser was unsure of ("I'm not really go for it" for
# "I'm not busy, go for it", taken as "not really"). On the spoken dev answers, acting on matches with these
# three only where the phrase explains under 30 % of 5+ words heard below 0.6 confidence was 12 wrong
# actions against 37 right ones: they are confirmed first, which costs the right ones a question, not the answer.
_THIN_WORDS = 5
_THIN_SHARE = 0.3
_THIN_CONFIDENCE = 0.6


class ScriptEngine:
    """One conversation. Build it per call; ``start()`` once, then ``handle()`` each event."""

    def __init__(self, graph: ScriptGraph, contact: Mapping[str, object] | None = None) -> None:
        self.graph = graph
        script = graph.dialplan.script
        fields = graph.dialplan.campaign.contact_fields
        self._contact = {k: f.default for k, f in fields.items() if f.default is not None}
        self._contact.update({k: v for k, v in (contact or {}).items() if v not in (None, "")})
        self._variables: dict[str, object] = dict(script.variables)
        self._slots: dict[str, str] = {}
        self.path: list[str] = []
        self.turns: list[Turn] = []
        self.prompts: list[PromptPlay] = []
        self.transcript: list[tuple[str, str]] = []
        self.outcome: str | None = None
        self.operator: str | None = None
        self._current: str | None = None
        self._no_input = 0
        self._no_match = 0
        self._transferring = False
        self._chain = 0
        self._unconfirmed: _Unconfirmed | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def node(self) -> CompiledNode:
        if self._current is None:
            raise ScriptError("the conversation has not started", code="engine-not-started")
        return self.graph.nodes[self._current]

    def start(self, at: str | None = None) -> list[Action]:
        """Enter the script's start node, or ``at`` (a benchmark or a test asking one node's question)."""
        if self._current is not None:
            raise ScriptError("the conversation has already started", code="engine-started")
        if at is not None and at not in self.graph.nodes:
            raise ScriptError(f"no node '{at}' in the script", code="engine-unknown-node")
        actions: list[Action] = []
        self._enter(at or self.graph.start, actions)
        return actions

    def handle(self, event: Event) -> list[Action]:
        if isinstance(event, PromptDone):
            self.prompts.append(PromptPlay(event.prompt_id, event.played_ms, event.interrupted))
            return []
        if isinstance(event, BargeIn):
            self.prompts.append(PromptPlay(event.prompt_id, event.at_ms, True))
            return []
        if self.finished:
            return []
        if isinstance(event, CallerHangup):
            self.outcome = "customer_hangup"
            return []
        self._chain = 0
        actions: list[Action] = []
        if isinstance(event, TransferResult):
            self._transfer_result(event, actions)
        elif self._transferring:
            return []  # nothing the person says changes a handoff in progress
        elif isinstance(event, Heard):
            self._heard(event, actions)
        elif isinstance(event, Silence):
            self._silence(actions)
        elif isinstance(event, Dtmf):
            self._dtmf(event, actions)
        else:
            raise ScriptError(f"unknown event {event!r}", code="engine-unknown-event")
        return actions

    def result(self) -> ScriptResult:
        return ScriptResult(
            self.outcome,
            list(self.path),
            dict(self._slots),
            dict(self._variables),
            list(self.turns),
            list(self.prompts),
            list(self.transcript),
            self.operator,
        )

    def values(self) -> dict[str, object]:
        """What templates can use: contact fields, variables and slots (slots win)."""
        return {**self._contact, **self._variables, **self._slots}

    # -- events -----------------------------------------------------------------------------

    def _heard(self, event: Heard, actions: list[Action]) -> None:
        text = event.text.strip()
        if not text and not event.alternatives:
            self._silence(actions)
            return
        node = self.node
        event, match = self._with_alternative(event, node)
        text = event.text.strip()
        if not text:  # something was said, but nothing the open-vocabulary pass could tell
            self.transcript.append(("customer", "[unclear]"))
            self.turns.append(Turn(node.id, "heard", "", event.confidence, result="no_match"))
            self._no_match_or_fallback(actions)
            return
        if self._unconfirmed is not None and self._confirmation(text, event.confidence, actions):
            return
        self.transcript.append(("customer", text))
        if event.confidence < node.min_confidence:
            self.turns.append(Turn(node.id, "heard", text, event.confidence, result="low_confidence"))
            self._no_match_or_fallback(actions)
            return
        if match:
            route, is_global = node.route_for(match.intent)
            confirm = node.confirms.get(match.intent)
            if _to_confirm(text, match, event.confidence, node) and self.graph.confirm_matcher:
                self.turns.append(Turn(node.id, "heard", text, event.confidence, match.intent, round(match.score, 3), "confirm"))
                self._unconfirmed = _Unconfirmed(match.intent, route, is_global, text, match.score)
                question = (confirm.say if confirm else None) or self.graph.dialplan.script.defaults.confirm_say
                self._say(f"{node.id}#confirm:{match.intent}", question, node.barge_in, actions, heard=text)
                self._listen(actions)
                return
            kind = "global" if is_global else "intent"
            self.turns.append(Turn(node.id, "heard", text, event.confidence, match.intent, round(match.score, 3), kind))
            self._follow(route, f"{node.id}@{match.intent}", text, actions)
            return
        capture = node.node.capture
        if capture:
            value = extract_slot(capture.type, text, self.graph.language)
            if value is not None:
                self._slots[capture.slot] = value
                self.turns.append(Turn(node.id, "heard", text, event.confidence, result="capture"))
                self._enter(capture.next, actions)
                return
        self.turns.append(Turn(node.id, "heard", text, event.confidence, result="no_match"))
        self._no_match_or_fallback(actions)

    def _with_alternative(self, event: Heard, node: CompiledNode) -> tuple[Heard, IntentMatch | None]:
        """The open-vocabulary text, with more confidence when the grammar pass found the same intent; unless it
        matches nothing and a grammar hypothesis that does sounds like it (or is a word or two the open pass could
        not make out): then that hypothesis, below 0.9 confidence (a consequential intent is confirmed). With it, the
        node's match of the text it returns (matched once here, not again by the caller)."""
        matcher = node.matcher
        # Nothing the open pass could make out is no evidence for any phrase: on the spoken dev answers every
        # grammar word taken for an empty text was wrong (7 of 7: a long "put me on your do-not-call list"
        # came out of the grammar as "go ahead"). It is a no-match ("[unclear]"), and the node asks again.
        if matcher is None or not event.text.strip():
            return event, None
        heard = matcher.match(event.text)
        alternatives = event.alternatives
        if not alternatives and event.second_opinion is not None and self._opinion_matters(event.text, heard, event.confidence, node):
            alternatives = event.second_opinion()
        for alt_text, alt_confidence in alternatives:
            alt = matcher.match(alt_text)
            if alt is None:
                continue
            if heard is not None and heard.intent == alt.intent:
                # two recognisers, one restricted and one not, reached the same answer: that is evidence
                # beyond either one's own score (Whisper's is low on robotic or noisy voices even when right)
                return Heard(event.text, max(event.confidence, min(alt_confidence, _AGREEMENT_CONFIDENCE))), heard
            if heard is not None:
                continue
            likeness = matcher.sounds_alike(event.text, alt_text)
            if likeness >= _ALTERNATIVE_LIKENESS:
                return Heard(alt_text, round(min(likeness, alt_confidence) * _ALTERNATIVE_DISCOUNT, 3)), alt
            # A word or two that the open pass could not make out ("yes", "Tuesday" in some voices come
            # out as "" or "to make"): a short grammar match is not a long answer forced onto a phrase,
            # which is where a grammar goes wrong. Taken at a confidence that has consequences confirmed.
            if (
                len(alt_text.split()) <= _SHORT_WORDS
                and len(event.text.split()) <= _SHORT_WORDS
                and event.confidence < _UNSURE
                and alt_confidence >= _UNSURE
            ):
                return Heard(alt_text, min(alt_confidence, _SHORT_CONFIDENCE)), alt
        return Heard(event.text, event.confidence), heard

    @staticmethod
    def _opinion_matters(text: str, heard: IntentMatch | None, confidence: float, node: CompiledNode) -> bool:
        """Whether a second recogniser's hypothesis can change what happens: the text matches nothing, or is
        too unsure to act on, or its intent would be confirmed first (in the demo, Whisper's "No." to an
        espeak-ng "no" came at 0.53, under the 0.6 that has a call-ending answer confirmed). Elsewhere the
        grammar decode is CPU spent on nothing."""
        return heard is None or confidence < node.min_confidence or _to_confirm(text, heard, confidence, node)

    def _confirmation(self, text: str, confidence: float, actions: list[Action]) -> bool:
        """The answer to "just to be sure...?": True when it was a yes or a no (and has been acted on);
        any other answer is taken as a new answer to the node's own question."""
        pending, self._unconfirmed = self._unconfirmed, None
        assert pending is not None and self.graph.confirm_matcher is not None
        node = self.node
        answer = self.graph.confirm_matcher.match(text) if confidence >= node.min_confidence else None
        if answer is None:
            return False
        self.transcript.append(("customer", text))
        if answer.intent == "yes":
            self.turns.append(Turn(node.id, "heard", text, confidence, pending.intent, round(pending.score, 3), "confirmed"))
            self._follow(pending.route, f"{node.id}@{pending.intent}", pending.text, actions)
        else:
            self.turns.append(Turn(node.id, "heard", text, confidence, pending.intent, round(pending.score, 3), "not_confirmed"))
            self._no_match_or_fallback(actions)
        return True

    def _silence(self, actions: list[Action]) -> None:
        self._unconfirmed = None  # a question left unanswered is not a yes
        node = self.node
        self.turns.append(Turn(node.id, "silence", result="no_input"))
        self._no_input += 1
        if self._no_input <= node.max_no_input:
            self._reprompt(node.node.on_no_input.reprompt, self.graph.dialplan.script.defaults.no_input_reprompt, "no_input", actions)
            return
        self._give_up(node.node.on_no_input.next, "no_input", actions)

    def _dtmf(self, event: Dtmf, actions: list[Action]) -> None:
        self._unconfirmed = None
        node = self.node
        route = node.node.dtmf.get(event.digit)
        self.transcript.append(("customer", f"[DTMF {event.digit}]"))
        if route is None:
            self.turns.append(Turn(node.id, "dtmf", event.digit, result="no_match"))
            self._no_match_or_fallback(actions)
            return
        self.turns.append(Turn(node.id, "dtmf", event.digit, intent=f"dtmf:{event.digit}", result="intent"))
        self._follow(route, f"{node.id}#dtmf{event.digit}", event.digit, actions)

    def _transfer_result(self, event: TransferResult, actions: list[Action]) -> None:
        if not self._transferring:
            return
        self._transferring = False
        if event.ok:
            self.outcome = "handoff"
            return
        node = self.node
        self.turns.append(Turn(node.id, "transfer", event.reason, result="transfer_failed"))
        target = node.node.on_transfer_fail or self.graph.dialplan.script.fallback
        if target and target != node.id:
            self._enter(target, actions)
        else:
            self._finish("handoff_failed", actions)

    # -- moves ------------------------------------------------------------------------------

    def _follow(self, route: Route, prompt_id: str, text: str, actions: list[Action]) -> None:
        self._variables.update(route.set)
        if route.capture:
            value = extract_slot(route.capture.type, text, self.graph.language)
            if value is not None:
                self._slots[route.capture.slot] = value
        if route.say:
            self._say(prompt_id, route.say, self.node.barge_in, actions)
        if route.next:
            self._enter(route.next, actions)
        elif route.hangup:
            self._finish(route.hangup, actions)
        else:  # resume: ask the current node's question again
            node = self.node
            self._say(f"{node.id}#reprompt", node.node.reprompt or node.node.say, node.barge_in, actions)
            self._listen(actions)

    def _enter(self, node_id: str, actions: list[Action]) -> None:
        self._chain += 1
        if self._chain > _MAX_CHAIN:
            raise ScriptError(f"node '{node_id}': the script keeps moving without listening (a loop of next)", code="script-loop")
        node = self.graph.nodes[node_id]
        self._current = node_id
        self._no_input = self._no_match = 0
        self.path.append(node_id)
        self._variables.update(node.node.set)
        if node.node.say:
            self._say(node_id, node.node.say, node.barge_in, actions)
        n = node.node
        if n.send_dtmf:
            actions.append(SendDtmf(n.send_dtmf, node_id))
        if n.transfer:
            op = self.graph.dialplan.operators[n.transfer]
            self._transferring = True
            self.operator = n.transfer
            actions.append(Transfer(n.transfer, op.uri, op.mode, op.warm, node_id))
        elif n.hangup:
            self._finish(n.hangup, actions)
        elif n.next:
            self._enter(n.next, actions)
        else:
            self._listen(actions)

    def _listen(self, actions: list[Action]) -> None:
        node = self.node
        vocabulary = node.vocabulary()
        if self._unconfirmed is not None and vocabulary and self.graph.confirm_matcher is not None:
            vocabulary = list(dict.fromkeys([*self.graph.confirm_matcher.vocabulary(), *vocabulary]))
        actions.append(Listen(node.id, tuple(vocabulary), node.no_input_timeout_s, bool(node.node.dtmf)))

    def _reprompt(self, own: Prompt | None, default: Prompt, kind: str, actions: list[Action]) -> None:
        node = self.node
        if own:
            self._say(f"{node.id}#{kind}", own, node.barge_in, actions)
        else:
            self._say(f"default#{kind}", default, node.barge_in, actions)
            again = node.node.reprompt or node.node.say
            if again:
                self._say(f"{node.id}#reprompt", again, node.barge_in, actions)
        self._listen(actions)

    def _no_match_or_fallback(self, actions: list[Action]) -> None:
        node = self.node
        self._no_match += 1
        if self._no_match <= node.max_no_match:
            self._reprompt(node.node.on_no_match.reprompt, self.graph.dialplan.script.defaults.no_match_reprompt, "no_match", actions)
            return
        self._give_up(node.node.on_no_match.next, "no_match", actions)

    def _give_up(self, target: str | None, outcome: str, actions: list[Action]) -> None:
        target = target or self.graph.dialplan.script.fallback
        if target and target != self._current:
            self._enter(target, actions)
        else:
            self._finish(outcome, actions)

    def _finish(self, outcome: str, actions: list[Action]) -> None:
        self.outcome = outcome
        actions.append(Hangup(outcome))

    def _say(self, prompt_id: str, prompt: Prompt, barge_in: bool, actions: list[Action], **extra: str) -> None:
        values = {**self.values(), **extra} if extra else self.values()
        text = render(prompt.text, values, where=f"prompt {prompt_id}") if prompt.text else None
        wav = self.graph.base_dir / prompt.wav if prompt.wav else None
        self.transcript.append(("bot", text or f"[{prompt.wav}]"))
        actions.append(Say(prompt_id, self._current or "", text, wav, barge_in))


def _thin(text: str, match: IntentMatch, confidence: float) -> bool:
    """A short phrase found in a long answer heard with little confidence (see ``_THIN_WORDS``)."""
    words = len(text.split())
    return words >= _THIN_WORDS and confidence < _THIN_CONFIDENCE and len(match.phrase.split()) / words < _THIN_SHARE


def _to_confirm(text: str, match: IntentMatch, confidence: float, node: CompiledNode) -> bool:
    """Whether this match is asked about before it is acted on: below its intent's ``confirm.below``, or thin."""
    confirm = node.confirms.get(match.intent)
    return (confirm is not None and min(match.score, confidence) < confirm.below) or _thin(text, match, confidence)
