"""Calling windows across zones, weekends, midnight and DST days; retries per outcome. Fixed instants only."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from voicebot.campaign.schedule import (
    contact_zone,
    next_window_start,
    retry_at,
    window_open,
)
from voicebot.config import CallingWindow, RetryPolicy

ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS_9_TO_20 = CallingWindow(start=time(9), end=time(20))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def window(start: time, end: time, days: tuple[str, ...] = ALL_DAYS, **kw: str) -> CallingWindow:
    return CallingWindow(start=start, end=end, days=days, **kw)


def brute_force_next_open(now: datetime, zone: str, w: CallingWindow, step: timedelta, horizon: timedelta) -> datetime:
    """The first instant on a ``step`` grid (from a whole minute) where the window is open."""
    t = now.replace(second=0, microsecond=0)
    while t <= now:
        t += step
    end = now + horizon
    while t < end:
        if window_open(t, zone, w):
            return t
        t += step
    raise AssertionError("never opens")


# -- zones ------------------------------------------------------------------------------------------


def test_same_instant_open_in_moscow_closed_in_los_angeles() -> None:
    now = utc(2026, 6, 10, 7, 0)  # Wednesday: 10:00 in Moscow (UTC+3), 00:00 in Los Angeles (UTC-7)
    assert window_open(now, "Europe/Moscow", WEEKDAYS_9_TO_20)
    assert not window_open(now, "America/Los_Angeles", WEEKDAYS_9_TO_20)
    assert next_window_start(now, "Europe/Moscow", WEEKDAYS_9_TO_20) == now
    assert next_window_start(now, "America/Los_Angeles", WEEKDAYS_9_TO_20) == utc(2026, 6, 10, 16, 0)  # 09:00 PDT


def test_window_edges_start_inclusive_end_exclusive() -> None:
    zone = "Europe/Moscow"
    assert window_open(utc(2026, 6, 10, 6, 0), zone, WEEKDAYS_9_TO_20)  # 09:00
    assert not window_open(utc(2026, 6, 10, 5, 59, 59), zone, WEEKDAYS_9_TO_20)
    assert window_open(utc(2026, 6, 10, 16, 59, 59), zone, WEEKDAYS_9_TO_20)
    assert not window_open(utc(2026, 6, 10, 17, 0), zone, WEEKDAYS_9_TO_20)  # 20:00


def test_result_is_aware_utc_and_later_than_now() -> None:
    now = datetime(2026, 6, 10, 23, 0, tzinfo=timezone(timedelta(hours=3)))  # an aware non-UTC "now" works too
    opens = next_window_start(now, "Europe/Moscow", WEEKDAYS_9_TO_20)
    assert opens.utcoffset() == timedelta(0)
    assert opens == utc(2026, 6, 11, 6, 0)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_open(datetime(2026, 6, 10, 7, 0), "UTC", WEEKDAYS_9_TO_20)


def test_unknown_zone_is_named() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        window_open(utc(2026, 6, 10, 7, 0), "Mars/Olympus", WEEKDAYS_9_TO_20)


# -- days ---------------------------------------------------------------------------------------------


def test_weekend_is_skipped() -> None:
    zone = "Europe/Berlin"
    friday_late = utc(2026, 6, 12, 18, 30)  # Friday 20:30 CEST: closed for the day
    saturday_noon = utc(2026, 6, 13, 10, 0)
    assert not window_open(friday_late, zone, WEEKDAYS_9_TO_20)
    assert not window_open(saturday_noon, zone, WEEKDAYS_9_TO_20)
    monday_9 = utc(2026, 6, 15, 7, 0)
    assert next_window_start(friday_late, zone, WEEKDAYS_9_TO_20) == monday_9
    assert next_window_start(saturday_noon, zone, WEEKDAYS_9_TO_20) == monday_9


def test_a_single_day_window_waits_a_week() -> None:
    w = window(time(9), time(12), days=("wed",))
    after = utc(2026, 6, 10, 12, 0)  # Wednesday 12:00 UTC: just closed
    assert next_window_start(after, "UTC", w) == utc(2026, 6, 17, 9, 0)


def test_no_days_raises() -> None:
    w = window(time(9), time(20), days=())
    assert not window_open(utc(2026, 6, 10, 12, 0), "UTC", w)
    with pytest.raises(ValueError, match="no days"):
        next_window_start(utc(2026, 6, 10, 12, 0), "UTC", w)


# -- across midnight -------------------------------------------------------------------------------------


def test_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    w = window(time(22), time(2), days=("fri",))
    assert window_open(utc(2026, 6, 12, 23, 0), "UTC", w)  # Friday 23:00
    assert window_open(utc(2026, 6, 13, 1, 59), "UTC", w)  # Saturday 01:59: Friday's night
    assert not window_open(utc(2026, 6, 13, 2, 0), "UTC", w)  # end is exclusive
    assert not window_open(utc(2026, 6, 12, 1, 0), "UTC", w)  # Friday 01:00 belongs to Thursday
    assert not window_open(utc(2026, 6, 13, 23, 0), "UTC", w)  # Saturday night is not allowed
    assert not window_open(utc(2026, 6, 12, 12, 0), "UTC", w)  # the middle of the day
    assert next_window_start(utc(2026, 6, 13, 3, 0), "UTC", w) == utc(2026, 6, 19, 22, 0)
    assert next_window_start(utc(2026, 6, 12, 1, 0), "UTC", w) == utc(2026, 6, 12, 22, 0)


# -- DST -----------------------------------------------------------------------------------------------------


def test_berlin_spring_forward_day() -> None:
    # 2026-03-29 (Sunday): 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    zone = "Europe/Berlin"
    assert window_open(utc(2026, 3, 29, 7, 30), zone, window(time(9), time(20)))  # 09:30 CEST (08:30 in CET)
    assert next_window_start(utc(2026, 3, 29, 0, 0), zone, window(time(9), time(20))) == utc(2026, 3, 29, 7, 0)
    # The day before, 09:00 was still 08:00 UTC.
    assert next_window_start(utc(2026, 3, 28, 0, 0), zone, window(time(9), time(20))) == utc(2026, 3, 28, 8, 0)


def test_berlin_window_starting_inside_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    w = window(time(2, 30), time(5))
    zone = "Europe/Berlin"
    assert not window_open(utc(2026, 3, 29, 0, 59, 59), zone, w)  # 01:59:59 CET
    assert window_open(utc(2026, 3, 29, 1, 0), zone, w)  # 03:00 CEST: 02:30 has passed
    assert next_window_start(utc(2026, 3, 29, 0, 30), zone, w) == utc(2026, 3, 29, 1, 0)


def test_window_entirely_inside_the_skipped_hour_opens_next_day() -> None:
    w = window(time(2, 10), time(2, 50))
    assert next_window_start(utc(2026, 3, 29, 0, 0), "Europe/Berlin", w) == utc(2026, 3, 30, 0, 10)  # 02:10 CEST


def test_new_york_fall_back_day() -> None:
    # 2026-11-01 (Sunday): 02:00 EDT becomes 01:00 EST at 06:00 UTC.
    zone = "America/New_York"
    assert next_window_start(utc(2026, 11, 1, 5, 0), zone, window(time(9), time(20))) == utc(2026, 11, 1, 14, 0)
    assert next_window_start(utc(2026, 10, 31, 5, 0), zone, window(time(9), time(20))) == utc(2026, 10, 31, 13, 0)


def test_new_york_repeated_hour_opens_the_window_twice() -> None:
    zone = "America/New_York"
    w = window(time(1), time(1, 30))
    assert window_open(utc(2026, 11, 1, 5, 10), zone, w)  # 01:10 EDT
    assert not window_open(utc(2026, 11, 1, 5, 45), zone, w)  # 01:45 EDT
    assert next_window_start(utc(2026, 11, 1, 5, 45), zone, w) == utc(2026, 11, 1, 6, 0)  # 01:00 EST
    # Its start repeats a quarter of an hour after the clock falls back.
    w_late = window(time(1, 15), time(1, 45))
    assert not window_open(utc(2026, 11, 1, 5, 50), zone, w_late)  # 01:50 EDT
    assert next_window_start(utc(2026, 11, 1, 5, 50), zone, w_late) == utc(2026, 11, 1, 6, 15)  # 01:15 EST
    # A window whose start does not repeat, but whose inside does: the clock falls back into it.
    w2 = window(time(0, 30), time(1, 30))
    assert next_window_start(utc(2026, 11, 1, 5, 45), zone, w2) == utc(2026, 11, 1, 6, 0)


@pytest.mark.parametrize(
    ("zone", "day", "w"),
    [
        ("Europe/Berlin", (2026, 3, 28), window(time(2, 30), time(5))),
        ("Europe/Berlin", (2026, 3, 28), window(time(22), time(2, 30), days=("sat", "mon"))),
        ("America/New_York", (2026, 10, 31), window(time(0, 30), time(1, 30))),
        ("America/New_York", (2026, 10, 31), window(time(1, 15), time(1, 45))),
        ("America/New_York", (2026, 10, 31), window(time(9), time(20), days=("mon", "tue", "wed", "thu", "fri"))),
        ("Australia/Lord_Howe", (2026, 4, 4), window(time(1, 45), time(2, 15))),  # a half-hour DST shift
    ],
)
def test_next_window_start_matches_a_minute_by_minute_scan(zone: str, day: tuple[int, int, int], w: CallingWindow) -> None:
    start = utc(*day) - timedelta(hours=14)
    for hour in range(0, 72, 5):
        now = start + timedelta(hours=hour, minutes=7)
        expected = now if window_open(now, zone, w) else brute_force_next_open(now, zone, w, timedelta(minutes=1), timedelta(days=8))
        assert next_window_start(now, zone, w) == expected, now


# -- zones of contacts ---------------------------------------------------------------------------------------


def test_contact_zone() -> None:
    per_contact = CallingWindow(timezone="contact", default_timezone="Europe/London")
    fixed = CallingWindow(timezone="Asia/Tokyo")
    assert contact_zone("America/Chicago", per_contact) == "America/Chicago"
    assert contact_zone(None, per_contact) == "Europe/London"
    assert contact_zone("", per_contact) == "Europe/London"
    assert contact_zone("America/Chicago", fixed) == "Asia/Tokyo"


# -- retries ---------------------------------------------------------------------------------------------------

POLICY = RetryPolicy(max_attempts=3, delays={"busy": "10m", "no_answer": "2h", "trunk_error": 0})
NOW = utc(2026, 6, 10, 12, 0)


def test_retry_per_outcome() -> None:
    assert retry_at("busy", 1, POLICY, NOW) == NOW + timedelta(minutes=10)
    assert retry_at("no_answer", 2, POLICY, NOW) == NOW + timedelta(hours=2)
    assert retry_at("trunk_error", 1, POLICY, NOW) == NOW  # a zero delay retries at once, it is not "final"


def test_retry_stops_at_max_attempts() -> None:
    assert retry_at("busy", 2, POLICY, NOW) is not None
    assert retry_at("busy", 3, POLICY, NOW) is None
    assert retry_at("busy", 4, POLICY, NOW) is None


def test_unlisted_outcome_is_final() -> None:
    assert retry_at("customer_hangup", 1, POLICY, NOW) is None
    assert retry_at("interested", 1, POLICY, NOW) is None
