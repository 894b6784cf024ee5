"""Calls over the broker: the topics and messages between a campaign's manager and its media workers.

Each worker has its own topics, named after it::

    voicebot/v1/<campaign>/workers/<worker>/jobs     manager → worker: Dial, Hangup (QoS 1)
    voicebot/v1/<campaign>/workers/<worker>/events   worker → manager: Dialled ... Ended (QoS 1, in order)
    voicebot/v1/<campaign>/workers/<worker>/status   worker → manager: heartbeat every second; last will "lost"

Why worker-specific topics and not MQTT 5 shared subscriptions
(``$share/workers/.../jobs``): a shared subscription hands each job to
whichever subscriber the broker picks, round robin, knowing nothing of how many
calls that worker already carries, so a full worker would have to refuse and
re-queue; and the manager would still have to learn afterwards which worker
took which call. The manager needs that anyway: when a worker dies, exactly its
calls become ``worker_lost``, and a hang-up must reach the worker that has the
call. With worker topics the manager places each call on the live worker with
the most free capacity (from the heartbeats and its own count), the same rule
as the local pool, and any MQTT 3.1.1 broker will do.

Jobs are idempotent by attempt id (a worker ignores a Dial it has seen: QoS 1
may deliver twice), and they expire: a worker refuses a Dial older than
``JOB_TTL_S``, so a job that waited in a broker queue is never dialled after
the manager gave up on it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from voicebot.bus.schema import TOPIC_ROOT, topic_segment
from voicebot.calls.messages import (
    Answered,
    Dial,
    DialFailed,
    Dialled,
    DtmfIn,
    Ended,
    HandoffRequested,
    Hangup,
    Ringing,
    ScriptProgress,
)
from voicebot.errors import VoicebotError

HEARTBEAT_S = 1.0
LOST_AFTER_S = 4.0  # no heartbeat for this long (while the manager hears the broker): the worker is lost
JOB_TTL_S = 30.0  # a Dial older than this is refused, never dialled late

_COMMANDS = {cls.__name__: cls for cls in (Dial, Hangup)}
_EVENTS = {cls.__name__: cls for cls in (Dialled, DialFailed, Ringing, Answered, DtmfIn, ScriptProgress, HandoffRequested, Ended)}


class JobMessageError(VoicebotError):
    """A message on a worker topic that is not one of ours (garbled, another version, another program)."""

    code = "bus-bad-message"


def dialplan_digest(path: Path) -> str:
    """What a worker and the manager compare: the same file, byte for byte."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def worker_topic(campaign: str, worker: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/{topic_segment(campaign)}/workers/{topic_segment(worker)}/{leaf}"


def workers_filter(campaign: str, leaf: str) -> str:
    return f"{TOPIC_ROOT}/{topic_segment(campaign)}/workers/+/{leaf}"


def worker_of(topic: str) -> str:
    """The worker name in a worker topic (``.../workers/<worker>/<leaf>``)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-3] != "workers":
        raise JobMessageError(f"{topic}: not a worker topic")
    return parts[-2]


class WorkerStatus(BaseModel):
    """A worker's heartbeat (``state`` up), its goodbye (down) or its last will (lost)."""

    v: int = 1
    worker: str
    state: str  # up | down | lost
    incarnation: str = ""  # new every start: a restarted worker under the same name carries none of the old calls
    host: str = ""
    pid: int | None = None
    capacity: int = 0  # calls it takes at once
    calls: list[str] = []  # attempt ids it is carrying now
    dialplan_sha256: str = ""  # jobs go only to workers running the manager's dialplan
    ts: float = 0.0


def encode_job(message: Dial | Hangup, now: float | None = None) -> bytes:
    body = asdict(message)
    return json.dumps({"type": type(message).__name__, "sent_at": time.time() if now is None else now, "body": body}).encode()


def decode_job(topic: str, payload: bytes) -> tuple[Dial | Hangup, float]:
    """The command and when the manager sent it (epoch seconds)."""
    kind, envelope = _envelope(topic, payload, _COMMANDS)
    sent_at = envelope.get("sent_at")
    if not isinstance(sent_at, (int, float)):
        raise JobMessageError(f"{topic}: a {kind} without sent_at")
    return _build(topic, _COMMANDS[kind], envelope["body"]), float(sent_at)


def encode_event(event: Any) -> bytes:
    # an Ended carries the call's record in its body: the manager may be on another host
    return json.dumps({"type": type(event).__name__, "body": asdict(event)}, ensure_ascii=False).encode()


def decode_event(topic: str, payload: bytes) -> Any:
    kind, envelope = _envelope(topic, payload, _EVENTS)
    return _build(topic, _EVENTS[kind], envelope["body"])


def decode_status(topic: str, payload: bytes) -> WorkerStatus:
    try:
        return WorkerStatus.model_validate_json(payload)
    except ValidationError as e:
        raise JobMessageError(f"{topic}: not a worker status: {e.errors()[0]['msg']}") from None


def _envelope(topic: str, payload: bytes, known: dict[str, type]) -> tuple[str, dict]:
    try:
        envelope = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise JobMessageError(f"{topic}: not JSON ({e})") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("body"), dict):
        raise JobMessageError(f"{topic}: expected an object with a 'body'")
    kind = envelope.get("type")
    if kind not in known:
        raise JobMessageError(f"{topic}: unknown message type {kind!r} (known: {', '.join(known)})")
    return kind, envelope


def _build(topic: str, cls: type, body: dict) -> Any:
    names = {f.name for f in fields(cls)}
    try:
        message = cls(**{k: v for k, v in body.items() if k in names})
    except TypeError as e:
        raise JobMessageError(f"{topic}: a {cls.__name__} with missing fields ({e})") from None
    if isinstance(message, Dial):  # JSON has no tuples: the contact's fields come back as lists
        try:
            contact = tuple((str(k), str(v)) for k, v in message.contact)
        except (TypeError, ValueError):
            raise JobMessageError(f"{topic}: a Dial whose contact is not a list of [field, value]") from None
        keys = message.keys_after_answer
        if not isinstance(keys, str) or not all(ch in "0123456789*#ABCD," for ch in keys):
            raise JobMessageError(f"{topic}: a Dial whose keys_after_answer are not DTMF digits and commas")
        message = Dial(str(message.attempt_id), str(message.number), contact, keys)
    if isinstance(message, Ended) and message.record is not None and not isinstance(message.record, dict):
        raise JobMessageError(f"{topic}: an Ended whose record is not an object")
    if isinstance(message, ScriptProgress):
        if not isinstance(message.nodes, list) or not isinstance(message.turns, list):
            raise JobMessageError(f"{topic}: a ScriptProgress whose nodes/turns are not lists")
        message = ScriptProgress(message.attempt_id, tuple(map(str, message.nodes)), tuple(t for t in message.turns if isinstance(t, dict)))
    if not isinstance(getattr(message, "attempt_id", ""), str) or not message.attempt_id:
        raise JobMessageError(f"{topic}: a {cls.__name__} without an attempt id")
    return message
