"""Placing calls, whoever makes them: what the campaign run sees of the local pool and the remote dispatcher."""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.calls.messages import WorkerEvent
from voicebot.errors import SipError


class NoCapacity(SipError):
    """Every worker slot (or the placer's concurrency) is taken: nothing was dialled; try again after an ``Ended``."""

    code = "sip-no-capacity"


@dataclass(frozen=True)
class PlacerEvent:
    """One worker event as the placer saw it."""

    worker_id: int  # serial of the worker (a replacement or a new incarnation gets a new one)
    pid: int | None
    received_at: float  # time.monotonic() seconds when the placer read it
    event: WorkerEvent


class TokenBucket:
    """Pure pacing: ``take(now_s)`` returns 0.0 and spends a token, or the seconds to wait for one."""

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs a positive rate and burst (got {rate_per_s}/s, burst {burst})")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now_s: float) -> float:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now_s - self._at) * self.rate_per_s)
        self._at = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s
