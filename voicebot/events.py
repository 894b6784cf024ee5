"""The campaign's events: a closed set, one pydantic model per kind, checked where they are written.

Every event is written once to the campaign store (``CampaignStore.add_event``), which
validates its payload here first: a producer that writes a payload its kind's model
refuses gets ``EventRefused`` at once, naming the kind and the field, instead of an
outbox that stops later on a payload it cannot publish. Sinks (MQTT now, HTTP webhooks
next) read the stored events with cursors of their own; what one cannot deliver goes to
the store's dead-letter table and the sink carries on.

A model may gain fields in a minor change (extra fields are kept); a field is never
removed or changes meaning without a new schema version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from voicebot.errors import VoicebotError


class EventRefused(VoicebotError):
    """An event whose kind is unknown or whose payload its kind's model refuses."""

    code = "event-refused"

    def __init__(self, message: str, *, kind: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow")


class CallDialled(EventData):
    uri: str
    worker_id: int | None = None


class CallRinging(EventData):
    sip_code: int
    after_ms: int


class CallAnswered(EventData):
    setup_ms: int


class HandoffRequested(EventData):
    operator: str
    uri: str
    mode: str
    node: str
    contact: dict[str, str]
    transcript: list[dict[str, str]]
    briefing: str = ""


class AttemptEnded(EventData):
    outcome: str
    sip_code: int | None = None
    talk_ms: int = 0
    handoff: str = ""  # "" (none) | transferred | bridged | failed


class AttemptInterrupted(EventData):
    pass


class Utterance(EventData):
    """Something the person did at a node, and what the script made of it."""

    node: str
    kind: str = "heard"  # heard | silence | dtmf
    text: str = ""
    confidence: float | None = None
    intent: str | None = None
    result: str = ""  # intent | global | capture | no_match | no_input | low_confidence


class NodeEntered(EventData):
    node: str


class CampaignProgress(EventData):
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


class CampaignControl(EventData):
    """What became of a command sent to ``voicebot/v1/<campaign>/control``."""

    command: str | None  # None: the message was not a command (see detail)
    ok: bool
    detail: str
    value: int | None = None
    id: str = ""
    by: str = ""


DATA_MODELS: dict[str, type[EventData]] = {
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


def validate_event(kind: str, payload: dict[str, Any] | EventData) -> dict[str, Any]:
    """The payload as its kind's model has it (defaults filled in), ready to store; ``EventRefused`` if not."""
    model = DATA_MODELS.get(kind)
    if model is None:
        known = ", ".join(sorted(DATA_MODELS))
        raise EventRefused(f"event kind '{kind}' is not one of the campaign's events ({known})", kind=kind)
    if isinstance(payload, EventData):
        if not isinstance(payload, model):
            raise EventRefused(f"event '{kind}' takes a {model.__name__}, not a {type(payload).__name__}", kind=kind)
        return payload.model_dump(mode="json")
    try:
        return model.model_validate(payload).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        got = f" (got {first['input']!r})" if first["type"] != "missing" and field else ""
        raise EventRefused(
            f"event '{kind}': field '{field}': {first['msg']}{got}" + (f"; {exc.error_count() - 1} more" if exc.error_count() > 1 else ""),
            kind=kind,
            field=field,
        ) from None
