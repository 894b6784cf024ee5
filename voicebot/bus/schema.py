"""What goes on the bus: versioned event schemas and their topics.

Every event is one JSON object (``Event``) published at QoS 1 on
``voicebot/v1/<campaign>/events/<type>``. ``seq`` is the event's id in the
campaign store: it only grows, so a consumer can order events and drop the
duplicates that at-least-once delivery may bring. ``data`` has the fields of
the type's model in ``voicebot/events.py`` (more may be added in a later minor change; a field is
never removed or changes meaning without a new ``v``).
"""

from __future__ import annotations

from pydantic import BaseModel

from voicebot.events import DATA_MODELS, HandoffRequested, validate_event

__all__ = ["DATA_MODELS", "TOPIC_ROOT", "Event", "HandoffRequested", "event_topic", "make_event", "topic_segment"]

SCHEMA_VERSION = 1
TOPIC_ROOT = f"voicebot/v{SCHEMA_VERSION}"


class Event(BaseModel):
    v: int = SCHEMA_VERSION
    type: str
    campaign: str
    seq: int
    ts: float  # epoch seconds, UTC
    attempt_id: str | None = None
    data: dict


def make_event(kind: str, campaign: str, seq: int, ts: float, attempt_id: str | None, payload: dict) -> Event:
    data = validate_event(kind, payload)  # EventRefused names the kind and the field
    return Event(type=kind, campaign=campaign, seq=seq, ts=ts, attempt_id=attempt_id, data=data)


def event_topic(campaign: str, kind: str) -> str:
    return f"{TOPIC_ROOT}/{topic_segment(campaign)}/events/{kind}"


def topic_segment(name: str) -> str:
    # MQTT wildcards and separators cannot appear inside one topic level
    return "".join("_" if ch in "/+#" else ch for ch in name) or "_"
