"""What goes on the bus: versioned event schemas and their topics.

Every event is one JSON object (``Event``) published at QoS 1 on
``voicebot/v1/<campaign>/events/<type>``. ``seq`` is the event's id in the
campaign store: it only grows, so a consumer can order events and drop the
duplicates that at-least-once delivery may bring. ``data`` has the fields of
the type's model below (more may be added in a later minor change; a field is
never removed or changes meaning without a new ``v``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1
TOPIC_ROOT = f"voicebot/v{SCHEMA_VERSION}"


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class CallDialled(_Data):
    uri: str
    worker_id: int | None = None


class CallRinging(_Data):
    sip_code: int
    after_ms: int


class CallAnswered(_Data):
    setup_ms: int


class HandoffRequested(_Data):
    operator: str
    uri: str
    mode: str
    node: str
    contact: dict[str, str]
    transcript: list[dict[str, str]]
    briefing: str = ""


class AttemptEnded(_Data):
    outcome: str
    sip_code: int | None = None
    talk_ms: int = 0
    handoff: str = ""  # "" (none) | transferred | bridged | failed


class AttemptInterrupted(_Data):
    pass


class Utterance(_Data):
    """Something the person did at a node, and what the script made of it."""

    node: str
    kind: str = "heard"  # heard | silence | dtmf
    text: str = ""
    confidence: float | None = None
    intent: str | None = None
    result: str = ""  # intent | global | capture | no_match | no_input | low_confidence


class NodeEntered(_Data):
    node: str


class CampaignProgress(_Data):
    """On every change of state and every 10 s while the run goes on."""

    state: str  # running | held | pausing | stopping | paused | idle | finished
    concurrency: int
    dialled: int  # this run
    answered: int
    in_call: int
    ended: int
    per_minute: float
    outcomes: dict[str, int]  # this run
    contacts: int  # the whole campaign, from the store
    pending: int
    done: int
    dnc: int


class CampaignControl(_Data):
    """What became of a command sent to ``voicebot/v1/<campaign>/control``."""

    command: str | None  # None: the message was not a command (see detail)
    ok: bool
    detail: str
    value: int | None = None
    id: str = ""
    by: str = ""


DATA_MODELS: dict[str, type[_Data]] = {
    "campaign.progress": CampaignProgress,
    "campaign.control": CampaignControl,
    "call.dialled": CallDialled,
    "call.ringing": CallRinging,
    "call.answered": CallAnswered,
    "handoff.requested": HandoffRequested,
    "attempt.ended": AttemptEnded,
    "attempt.interrupted": AttemptInterrupted,
    "call.utterance": Utterance,
    "call.node_entered": NodeEntered,
}


class Event(BaseModel):
    v: int = SCHEMA_VERSION
    type: str
    campaign: str
    seq: int
    ts: float  # epoch seconds, UTC
    attempt_id: str | None = None
    data: dict


def make_event(kind: str, campaign: str, seq: int, ts: float, attempt_id: str | None, payload: dict) -> Event:
    model = DATA_MODELS.get(kind)
    data = model.model_validate(payload).model_dump() if model is not None else dict(payload)
    return Event(type=kind, campaign=campaign, seq=seq, ts=ts, attempt_id=attempt_id, data=data)


def event_topic(campaign: str, kind: str) -> str:
    return f"{TOPIC_ROOT}/{topic_segment(campaign)}/events/{kind}"


def topic_segment(name: str) -> str:
    # MQTT wildcards and separators cannot appear inside one topic level
    return "".join("_" if ch in "/+#" else ch for ch in name) or "_"
