"""When a contact may be called: calling windows in the contact's time zone, and retries.

Pure functions: no I/O and no clock reads. ``now`` is always handed in as an
aware datetime (the runner passes UTC), so tests drive them with fixed instants.

A calling window is a rule about local wall-clock time: "weekdays 09:00-20:00
where the person is". ``start > end`` means the window crosses midnight
(22:00-02:00); the part after midnight belongs to the day it started on, so a
Friday-only 22:00-02:00 window is open late Friday and early Saturday, never
early Friday.

Daylight-saving days are the hard part. Local time can jump forward (a gap:
02:00-03:00 never happens in Berlin on 2026-03-29) or back (a fold: 01:00-02:00
happens twice in New York on 2026-11-01). ``window_open`` only looks at the
local time of one instant, which is always right. ``next_window_start`` must
find the first instant after ``now`` at which that answer turns true; it can
only turn true when local time reaches ``start`` (once, or twice in a fold) or
when local time jumps (a DST transition), so those instants are the only
candidates it checks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voicebot.config import CallingWindow, RetryPolicy

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_SEARCH_DAYS = 8  # a week and a day: every weekday's opening plus the rest of today's


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}' (use an IANA name such as Europe/Berlin)") from None


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"'now' must be an aware datetime (UTC), got naive {now.isoformat()}")
    return now


def _allowed(day: date, window: CallingWindow) -> bool:
    return _DAYS[day.weekday()] in window.days


def _open_local(local: datetime, window: CallingWindow) -> bool:
    t = local.time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= t < window.end and _allowed(local.date(), window)
    # Crosses midnight: the evening part belongs to today, the early-morning part to yesterday.
    if t >= window.start:
        return _allowed(local.date(), window)
    if t < window.end:
        return _allowed(local.date() - timedelta(days=1), window)
    return False


def window_open(now: datetime, zone: str, window: CallingWindow) -> bool:
    """Is ``now`` inside the calling window in ``zone`` (IANA)?"""
    return _open_local(_aware(now).astimezone(_zone(zone)), window)


def _local_instants(day: date, at: time, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants whose wall clock in ``tz`` reads ``day at``: two in a fold; in a gap,
    PEP 495 gives two instants on either side of it, which the caller checks like any other."""
    return [datetime.combine(day, at, tzinfo=tz).replace(fold=fold).astimezone(UTC) for fold in (0, 1)]


def _transition(day: date, tz: ZoneInfo) -> datetime | None:
    """The instant the UTC offset of ``tz`` changes during local ``day``, if it does (to the second)."""
    lo = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    before = lo.astimezone(tz).utcoffset()
    if hi.astimezone(tz).utcoffset() == before:
        return None  # (two changes within one day, back to the same offset, do not occur in tzdata)
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:  # invariant: offset at lo_s is `before`, at hi_s it is not
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo_s = mid
        else:
            hi_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def next_window_start(now: datetime, zone: str, window: CallingWindow) -> datetime:
    """``now`` if the window is open, else the next instant (aware, UTC) at which it opens."""
    if not window.days:
        raise ValueError("the calling window has no days: it never opens")
    now = _aware(now)
    tz = _zone(zone)
    if _open_local(now.astimezone(tz), window):
        return now
    today = now.astimezone(tz).date()
    candidates: list[datetime] = []
    for offset in range(-1, _SEARCH_DAYS + 1):
        day = today + timedelta(days=offset)
        candidates.extend(_local_instants(day, window.start, tz))
        jump = _transition(day, tz)
        if jump is not None:
            candidates.append(jump)
    opening = [c for c in candidates if c > now and _open_local(c.astimezone(tz), window)]
    if not opening:
        raise ValueError(f"the calling window never opens within {_SEARCH_DAYS} days in {zone}")
    return min(opening)


def contact_zone(contact_timezone: str | None, window: CallingWindow) -> str:
    """The zone a contact's window is read in: a fixed window zone wins, then the contact's own, then the default."""
    if window.timezone != "contact":
        return window.timezone
    return contact_timezone or window.default_timezone


def retry_at(outcome: str, attempts_made: int, policy: RetryPolicy, now: datetime) -> datetime | None:
    """When to try again after an attempt ended with ``outcome``; None means final.

    ``attempts_made`` counts every attempt so far, this one included (interrupted ones too).
    An outcome not listed in ``policy.delays`` is final, so a new outcome label never
    causes calls nobody asked for.
    """
    delay_s = policy.delays.get(outcome)
    if delay_s is None or attempts_made >= policy.max_attempts:
        return None
    return _aware(now) + timedelta(seconds=delay_s)
