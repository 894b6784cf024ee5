"""A sample campaign for report tests: the real script engine, scripted customers, a real store.

Each answered call runs ``TextConversation`` (the engine `voicebot chat` uses) over
the customer's turns and is written as the dialer writes it: a ``CallReport``
record (the engine's path, decisions and transcript; prompt and turn timings on a
virtual clock, as a call session logs them) in an ``AttemptResult`` like the
runner's, through the store's public API at fixed timestamps. Deterministic: the
same calls, ids and numbers every time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from voicebot.campaign.store import AttemptResult, CampaignStore
from voicebot.script.conversation import CustomerTurn, TextConversation
from voicebot.script.engine import Hangup, Say, ScriptResult, Transfer
from voicebot.script.graph import ScriptGraph
from voicebot.session import (
    AmdVerdict,
    BotSaid,
    CallReport,
    HandoffEnded,
    HandoffStarted,
    KeysPressed,
    NoInput,
    PromptHeard,
)

MS_PER_CHAR = 60  # prompt audio length, as FakePrompts renders it
MS_PER_WORD = 300
REACTION_MS = 700
COMPLETE_END_MS = 240  # end of turn when the words matched an intent completely
END_OF_TURN_MS = 600
OPERATOR_ANSWER_MS = 3000


def say(text: str, confidence: float = 0.92) -> CustomerTurn:
    return CustomerTurn(text=text, confidence=confidence)


SILENCE = CustomerTurn(silence=True)
HANGS_UP = CustomerTurn(hangup=True)


@dataclass(frozen=True)
class Persona:
    """How one call goes: a SIP result, or an answered call and what the person says."""

    name: str
    turns: tuple[CustomerTurn, ...] = ()
    sip_code: int = 200
    outcome: str | None = None  # for calls that never reach the script: busy, no_answer, voicemail...
    transfer_ok: bool = True


PERSONAS: dict[str, Persona] = {
    p.name: p
    for p in (
        Persona("meeting", (say("yes"), say("we track it in a spreadsheet"), say("sure"), say("tuesday"), say("yes"))),
        Persona(
            "meeting_after_doubt",
            (say("yes"), say("we use the aws console"), say("hmm what exactly would they do"), say("yes"), say("thursday"), say("yes")),
        ),
        Persona(
            "meeting_after_objections",
            (
                say("yes"),
                say("i don't have time"),
                say("go on"),
                say("no"),
                say("we already have a provider"),
                say("yes"),
                say("monday at eleven"),
                say("yes"),
            ),
        ),
        Persona("callback", (say("i'm driving"), say("tomorrow at three"))),
        Persona("already_have", (say("we already have a solution"), say("no"))),
        Persona("not_interested", (say("not interested"), say("not a priority right now"))),
        Persona("send_offer", (say("send me an email"), say("just send it"))),
        Persona("price", (say("how much does it cost"),)),
        Persona("operator_busy", (say("can i talk to someone"),), transfer_ok=False),
        Persona("silent", (SILENCE, SILENCE, SILENCE)),
        Persona("confused", (say("my dog ate the router"), say("is this about the invoice"), say("is this about the invoice"))),
        Persona(
            "doubt_then_no",
            (
                say("is this about the invoice"),
                SILENCE,
                say("yes"),
                say("we track it in a spreadsheet"),
                say("what about security"),
                say("no thanks"),
                say("no"),
            ),
        ),
        Persona(
            "who_then_no",
            (
                say("who is this"),
                say("yes"),
                say("we have a finops team"),
                say("what about security"),
                say("not interested"),
                say("maybe next year"),
            ),
        ),
        Persona("mumbles", (say("yes", confidence=0.2), say("yes"), say("we track it"), say("no"), say("okay fine"))),
        Persona(
            "keys_then_hangup",
            (CustomerTurn(dtmf="5"), say("yes"), say("we track it"), say("yes"), say("neither works for me"), say("no"), HANGS_UP),
        ),
        Persona("dnc", (say("stop calling me"),)),
        Persona("hangs_up", (HANGS_UP,)),
        Persona("wrong_number", (say("wrong number"),)),
        Persona("busy", sip_code=486, outcome="busy"),
        Persona("no_answer", sip_code=480, outcome="no_answer"),
        Persona("invalid", sip_code=404, outcome="invalid_number"),
        Persona("voicemail", outcome="voicemail"),
    )
}


@dataclass(frozen=True)
class SampleContact:
    phone: str
    fields: dict[str, str]
    tags: tuple[str, ...]
    priority: int = 0
    timezone: str | None = None
    row: int = 0
    source: str = "sample"
    extension: str = ""


# (first name, company, tags, the persona of each attempt in order)
CONTACTS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Anna", "Northwind", ("inbound", "vip"), ("meeting",)),
    ("Robert", "Contoso", ("inbound",), ("busy", "meeting_after_doubt")),
    ("Maria", "Fabrikam", ("cold",), ("meeting_after_objections",)),
    ("James", "Adventure Works", ("cold", "vip"), ("no_answer", "no_answer", "callback")),
    ("Linda", "Tailspin", ("cold",), ("already_have",)),
    ("Peter", "Proseware", ("cold",), ("not_interested",)),
    ("Olga", "Litware", ("inbound",), ("send_offer",)),
    ("Chen", "Woodgrove", ("inbound", "vip"), ("price",)),
    ("Sara", "Fourth Coffee", ("cold",), ("operator_busy",)),
    ("Tom", "Alpine Ski", ("cold",), ("silent",)),
    ("Ines", "Blue Yonder", ("cold",), ("confused",)),
    ("Raj", "Coho Winery", ("cold",), ("doubt_then_no",)),
    ("Emma", "Humongous", ("inbound",), ("who_then_no",)),
    ("Lars", "Lucerne", ("cold",), ("mumbles",)),
    ("Yuki", "Margie's Travel", ("cold",), ("keys_then_hangup",)),
    ("Omar", "Nod Publishers", ("cold",), ("dnc",)),
    ("Greta", "Relecloud", ("cold",), ("voicemail", "hangs_up")),
    ("Ivan", "Southridge", ("cold",), ("wrong_number",)),
    ("Lena", "Trey Research", ("inbound",), ("meeting",)),
    ("Paul", "Wide World", ("cold",), ("invalid",)),
    ("Nora", "Wingtip", ("cold",), ("busy", "busy")),
    ("Hugo", "Datum", ("cold", "vip"), ("meeting",)),
    ("Zoe", "Bellows", ("cold",), ()),  # imported, not called yet
)

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC).timestamp()  # a Monday
SPACING_S = 13 * 60  # between first attempts
RETRY_S = 2 * 3600


def build_sample_campaign(
    db: Path,
    graph: ScriptGraph,
    dialplan_path: str = "",
    recordings: bool = True,
    plan: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = CONTACTS,
    personas: Mapping[str, Persona] = PERSONAS,
) -> Path:
    """Write the sample campaign (``plan``: see ``CONTACTS``; persona names index ``personas``)
    into a new store at ``db``; returns ``db``."""
    campaign = graph.dialplan.campaign.name
    contacts = [
        SampleContact(f"+1212555{i:04d}", {"first_name": first, "company": company}, tags, row=i + 1)
        for i, (first, company, tags, _) in enumerate(plan)
    ]
    with CampaignStore.open(db, campaign, dialplan_path) as store:
        store.add_contacts(contacts)
        ids = {c.phone: c.id for c in store.due(float("inf"), limit=len(contacts))}
        calls = []
        for i, (contact, (_, _, _, attempts)) in enumerate(zip(contacts, plan)):
            for seq, name in enumerate(attempts):
                calls.append((START + i * SPACING_S + seq * RETRY_S, ids[contact.phone], contact, personas[name], seq + 1 == len(attempts)))
        for at, contact_id, contact, persona, last in sorted(calls, key=lambda c: (c[0], c[1])):
            attempt = store.start_attempt(contact_id, at)
            store.mark_dialling(attempt.id, worker_id=contact_id % 3, now=at)
            result = _result(attempt.id, persona, graph, contact.fields, recordings)
            ended = at + (result.setup_ms + result.talk_ms) / 1000
            store.finish_attempt(attempt.id, result, ended, None if last else at + RETRY_S, dnc=result.outcome == "dnc")
    return db


def _result(attempt_id: str, persona: Persona, graph: ScriptGraph, contact: dict[str, str], recordings: bool) -> AttemptResult:
    # As the runner builds it from the worker's Ended and the call's JSON record.
    setup_ms = 1800 + 150 * (len(persona.name) % 7)
    if persona.sip_code != 200:
        return AttemptResult(
            outcome=persona.outcome or "trunk_error",
            sip_code=persona.sip_code,
            setup_ms=setup_ms,
            reason=f"SIP {persona.sip_code}",
            hangup_by="remote",
        )
    report = _call_report(persona, graph, contact)
    record = asdict(report)
    handoff = ""
    if report.handoff is not None:
        handoff = "transferred" if report.handoff.get("ok") else "failed"
    hung_up_by_customer = report.outcome == "customer_hangup"
    return AttemptResult(
        outcome=report.outcome or "customer_hangup",
        session_outcome=report.outcome,
        sip_code=200,
        setup_ms=setup_ms,
        talk_ms=report.duration_ms,
        hangup_by="remote" if hung_up_by_customer else "local",
        handoff=handoff,
        path=list(report.path),
        slots=dict(report.slots),
        transcript=list(report.transcript),
        recording=f"recordings/{attempt_id}.wav" if recordings else None,
        record=record,
    )


def _call_report(persona: Persona, graph: ScriptGraph, contact: dict[str, str]) -> CallReport:
    conv = TextConversation(graph, contact, transfer_ok=persona.transfer_ok)
    clock = _Clock(graph)
    if persona.outcome == "voicemail":
        # The machine's greeting runs on over the bot's: the detector gives up on the script.
        clock.bot([a for a in conv.start() if isinstance(a, Say)][:1], interrupted_at_ms=2400)
        clock.log.append(AmdVerdict(clock.t, "machine", "long greeting"))
        res = conv.result()
        return CallReport("voicemail", res.path, {}, clock.t, [], clock.prompts, [], clock.events(), clock.transcript(res), None, [])
    clock.bot(conv.start())
    for turn in persona.turns:
        if conv.finished:
            break
        node = conv.listening_at or ""
        seen = len(conv.engine.turns)
        actions = conv.send(turn)
        decision = conv.engine.turns[seen] if len(conv.engine.turns) > seen else None
        clock.customer(turn, node, decision.result if decision else "")
        clock.bot(actions)
    if not conv.finished:  # the script still listens: the person hangs up
        conv.send(HANGS_UP)
        clock.t += 1500
    res = conv.result()
    handoff = clock.handoff(res, contact)  # before events(): it logs how the handoff ended
    return CallReport(
        res.outcome,
        res.path,
        dict(res.slots),
        clock.t,
        clock.turns,
        clock.prompts,
        [],
        clock.events(),
        clock.transcript(res),
        handoff,
        [asdict(t) for t in res.turns],
    )


class _Clock:
    """The call's timeline: bot prompts play for their length, the person answers after a pause."""

    def __init__(self, graph: ScriptGraph) -> None:
        self.graph = graph
        self.t = 0
        self.log: list = []
        self.turns: list[dict] = []
        self.prompts: list[dict] = []
        self._handoff: tuple[str, str, int] | None = None

    def bot(self, actions: list, interrupted_at_ms: int | None = None) -> None:
        for action in actions:
            if isinstance(action, Say):
                total = MS_PER_CHAR * len(action.text or "x")
                played = min(total, interrupted_at_ms) if interrupted_at_ms is not None else total
                self.log.append(BotSaid(self.t, action.prompt_id, action.text))
                self.t += played
                self.prompts.append(asdict(PromptHeard(self.t, action.prompt_id, played, total, played < total)))
            elif isinstance(action, Transfer):
                self.log.append(HandoffStarted(self.t, action.operator, action.mode, action.node))
                self._handoff = (action.operator, action.node, self.t)
                self.t += OPERATOR_ANSWER_MS
            elif isinstance(action, Hangup):
                self.t += 200

    def customer(self, turn: CustomerTurn, node: str, result: str) -> None:
        if turn.silence:
            timeout_s = self.graph.nodes[node].no_input_timeout_s
            self.t += int(timeout_s * 1000)
            self.log.append(NoInput(self.t, node))
        elif turn.dtmf is not None:
            self.t += REACTION_MS
            self.log.append(KeysPressed(self.t, node, turn.dtmf))
        elif turn.text:
            speech_end = self.t + REACTION_MS + MS_PER_WORD * len(turn.text.split())
            decision = speech_end + (COMPLETE_END_MS if result in ("intent", "global") else END_OF_TURN_MS)
            self.turns.append(
                {
                    "node": node,
                    "text": turn.text,
                    "confidence": turn.confidence,
                    "end_reason": "complete" if result in ("intent", "global") else "silence",
                    "speech_end_ms": speech_end,
                    "decision_ms": decision,
                    "bot_audio_ms": decision + 20,
                    "end_of_speech_to_bot_audio_ms": decision + 20 - speech_end,
                    "decision_to_bot_audio_ms": 20,
                    "compute_ms": 4.0,
                }
            )
            self.t = decision + 20

    def events(self) -> list[dict]:
        return [{"type": type(e).__name__, **asdict(e)} for e in self.log]

    def transcript(self, res: ScriptResult) -> list[dict]:
        return [{"speaker": who, "text": text} for who, text in res.transcript]

    def handoff(self, res: ScriptResult, contact: dict[str, str]) -> dict | None:
        if self._handoff is None:
            return None
        operator, node, at = self._handoff
        failed = any(t.result == "transfer_failed" for t in res.turns)
        ended = HandoffEnded(at + OPERATOR_ANSWER_MS, not failed, "operator did not answer" if failed else "")
        # in its place on the timeline: before what the bot said once the transfer failed
        where = next((i for i, e in enumerate(self.log) if e.ts_ms >= ended.ts_ms), len(self.log))
        self.log.insert(where, ended)
        op = self.graph.dialplan.operators[operator]
        return {
            "operator": operator,
            "uri": op.uri,
            "mode": op.mode,
            "warm": op.warm,
            "node": node,
            "contact": dict(contact),
            "transcript": self.transcript(res),
            "briefing": "",
            "ok": not failed,
            "reason": "operator did not answer" if failed else "",
        }
