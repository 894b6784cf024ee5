"""How a call attempt ended, from what SIP said: a pure mapping, no pjsua2.

The SIP code is always kept next to the outcome, so a report can tell a 503
from a 500 and a 480 from our own ring timeout (487 after our CANCEL).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no_answer"
REJECTED = "rejected"
INVALID_NUMBER = "invalid_number"
TRUNK_ERROR = "trunk_error"
WORKER_LOST = "worker_lost"

_BY_CODE = {
    486: BUSY,
    600: BUSY,
    480: NO_ANSWER,
    408: NO_ANSWER,
    603: REJECTED,
    404: INVALID_NUMBER,
    484: INVALID_NUMBER,
    410: INVALID_NUMBER,  # Gone: the number was disconnected
    604: INVALID_NUMBER,  # Does Not Exist Anywhere
}


class LocalCancel(Enum):
    """Why we, not the far end, ended an unanswered call."""

    RING_TIMEOUT = "ring_timeout"
    ABANDONED = "abandoned"  # the worker is shutting down
    STOPPED = "stopped"  # the manager hung up (a campaign stopping)


@dataclass(frozen=True)
class CallOutcome:
    outcome: str
    sip_code: int | None
    reason: str


def answered(sip_code: int = 200, reason: str = "OK") -> CallOutcome:
    return CallOutcome(ANSWERED, sip_code, reason)


def unanswered(sip_code: int | None, reason: str, *, got_response: bool, cancel: LocalCancel | None = None) -> CallOutcome:
    """Outcome of a call that never reached 200 OK.

    ``got_response``: the far end sent a provisional 18x (pjsua reports no
    state for a bare 100 Trying). Without one, a 408 is a transaction timeout
    (pjsip's own when the trunk is silent) and a ring timeout means nothing
    ever rang: both are trunk errors, not a person who did not pick up.
    """
    code = sip_code or None
    if cancel is LocalCancel.RING_TIMEOUT:
        if got_response:
            return CallOutcome(NO_ANSWER, code, "ring timeout")
        # pjsip reports its own 487 for the CANCEL it never got to send: not a code from the trunk
        return CallOutcome(TRUNK_ERROR, None, "no response from the trunk before the ring timeout")
    if cancel is LocalCancel.ABANDONED:
        return CallOutcome(WORKER_LOST, code, "cancelled by the worker before answer")
    if cancel is LocalCancel.STOPPED:
        return CallOutcome("stopped", code, "ended by the dialer before answer")
    if code == 408 and not got_response:
        return CallOutcome(TRUNK_ERROR, code, f"no response from the trunk ({reason})")
    # Anything unlisted (3xx not followed, 401/403/407 auth, 488 codecs, 5xx,
    # transport failures pjsip reports as 503) is the trunk's or our setup's fault.
    return CallOutcome(_BY_CODE.get(code or 0, TRUNK_ERROR), code, reason)
