"""Pure numbers: percentiles, media-clock intervals, late frames, the capacity step that meets its target."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FRAME_MS = 20.0
# DESIGN.md's target reads "p99 frame interval ≤ 30 ms and < 0.1 % late frames": a frame is late
# when it comes more than half a frame after its predecessor, i.e. its interval exceeds 30 ms.
LATE_MS = 30.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float], qs: Iterable[int] = (50, 95, 99), digits: int = 1) -> dict:
    """n, the given percentiles and the max, rounded; percentiles are None when there is no value."""
    out: dict = {"n": len(values)}
    for q in qs:
        p = percentile(values, q)
        out[f"p{q}"] = None if p is None else round(p, digits)
    out["max"] = round(max(values), digits) if values else None
    return out


def intervals_ms(ticks_s: Sequence[float], start_s: float | None = None, end_s: float | None = None) -> list[float]:
    """Gaps between consecutive clock ticks (seconds in, ms out) whose later tick lies in [start_s, end_s)."""
    out = []
    for prev, cur in zip(ticks_s, ticks_s[1:]):
        if (start_s is None or cur >= start_s) and (end_s is None or cur < end_s):
            out.append((cur - prev) * 1000.0)
    return out


def late_frames(intervals: Sequence[float], late_ms: float = LATE_MS) -> int:
    return sum(1 for i in intervals if i > late_ms)


@dataclass(frozen=True)
class FrameStats:
    calls: int
    frames: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    late: int

    @property
    def late_pct(self) -> float | None:
        return 100.0 * self.late / self.frames if self.frames else None

    def meets(self, p99_max_ms: float = LATE_MS, late_pct_max: float = 0.1) -> bool:
        return self.frames > 0 and self.p99_ms is not None and self.p99_ms <= p99_max_ms and self.late_pct < late_pct_max

    def as_dict(self) -> dict:
        return {
            "calls_measured": self.calls,
            "frames": self.frames,
            "interval_p50_ms": self.p50_ms,
            "interval_p99_ms": self.p99_ms,
            "interval_max_ms": self.max_ms,
            "late_frames": self.late,
            "late_pct": None if self.late_pct is None else round(self.late_pct, 4),
        }


def frame_stats(per_call_ticks: Iterable[Sequence[float]], start_s: float, end_s: float) -> FrameStats:
    """Every call's tick intervals inside the window, pooled."""
    pooled: list[float] = []
    calls = 0
    for ticks in per_call_ticks:
        iv = intervals_ms(ticks, start_s, end_s)
        if iv:
            calls += 1
            pooled.extend(iv)
    pooled.sort()
    return FrameStats(
        calls,
        len(pooled),
        _round(percentile(pooled, 50)),
        _round(percentile(pooled, 99)),
        _round(pooled[-1] if pooled else None),
        late_frames(pooled),
    )


def highest_passing_step(steps: Sequence[dict], key: str = "meets_target") -> int | None:
    """The largest ``calls`` among steps that pass, counting only up to the first failing step:
    a load that fails at 100 calls and passes at 150 by luck is not a capacity of 150."""
    best = None
    for step in sorted(steps, key=lambda s: s["calls"]):
        if not step.get(key):
            break
        best = step["calls"]
    return best


def _round(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)
