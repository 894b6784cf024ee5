"""What the manager and a media worker say to each other: commands in, events out.

Plain frozen dataclasses: they cross a process boundary (multiprocessing
queues now, MQTT later) and are the whole vocabulary between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- commands (manager → worker) --------------------------------------------------------


@dataclass(frozen=True)
class Dial:
    attempt_id: str
    number: str
    contact: tuple[tuple[str, str], ...] = ()  # the contact's fields, for the call's script
    # keys to press once the far end answers, before the bot speaks ("," = 500 ms): an extension
    # behind the dialled number
    keys_after_answer: str = ""


@dataclass(frozen=True)
class Hangup:
    attempt_id: str


@dataclass(frozen=True)
class Stop:
    pass


Command = Dial | Hangup | Stop


# --- events (worker → manager) ----------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    max_calls: int  # customer calls this worker takes at once: K, less the calls kept for operator legs
    local_address: str


@dataclass(frozen=True)
class Capacity:
    """The customer calls a worker takes now: fewer while bridged handoffs hold operator legs."""

    max_calls: int


@dataclass(frozen=True)
class WorkerFailed:
    """The endpoint could not be set up (bad trunk settings, no free port); the worker exits."""

    code: str
    message: str


@dataclass(frozen=True)
class Dialled:
    attempt_id: str
    uri: str


@dataclass(frozen=True)
class DialFailed:
    """The call was never placed (so it may be retried at once): worker full, bad URI."""

    attempt_id: str
    code: str
    message: str


@dataclass(frozen=True)
class Ringing:
    attempt_id: str
    sip_code: int
    after_ms: int


@dataclass(frozen=True)
class Answered:
    attempt_id: str
    setup_ms: int  # makeCall → 200 OK


@dataclass(frozen=True)
class DtmfIn:
    attempt_id: str
    digit: str


@dataclass(frozen=True)
class ScriptProgress:
    """What the call's script did since the last one, as it happens: nodes entered, and the
    engine's decision on each thing the person did (node, kind, text, confidence, intent, result)."""

    attempt_id: str
    nodes: tuple[str, ...]
    turns: tuple[dict, ...]


@dataclass(frozen=True)
class HandoffRequested:
    """The script hands the call to a person: the context the operator continues from
    (contact, transcript so far, the node reached, the target and mode)."""

    attempt_id: str
    context: dict


@dataclass(frozen=True)
class Ended:
    attempt_id: str
    outcome: str  # answered | busy | no_answer | rejected | invalid_number | trunk_error | worker_lost
    sip_code: int | None
    reason: str
    setup_ms: int  # dial → final response (answer or failure)
    talk_ms: int  # answer → disconnect; 0 if never answered
    session_outcome: str | None  # what the script decided, for answered calls
    hangup_by: str  # remote | local
    frames_in: int
    frames_out: int
    callback_errors: int
    first_sound_out_ms: int | None = None  # 200 OK → first frame of the bot's audio handed to the bridge
    first_sound_in_ms: int | None = None  # 200 OK → first frame with sound from the far end
    handoff: str = ""  # "" (none) | transferred | bridged | failed
    # The call's record (path, slots, transcript, turns, prompts heard) as its session reported it: the result
    # travels with the message, over a pipe or the broker; a JSON file per call is only an optional copy.
    record: dict | None = None


@dataclass(frozen=True)
class Stopped:
    pass


WorkerEvent = (
    Ready
    | Capacity
    | WorkerFailed
    | Dialled
    | DialFailed
    | Ringing
    | Answered
    | DtmfIn
    | ScriptProgress
    | HandoffRequested
    | Ended
    | Stopped
)
