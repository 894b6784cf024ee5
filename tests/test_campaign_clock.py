"""A campaign run on a fake clock: calling windows in each contact's zone, retry delays, weekends, DNC.

The run is the real ``CampaignRun`` with the real store and schedule; only the
calls are played by ``FakeTrunk``, a pool stand-in whose calls end as each
number's plan says, some seconds of fake time after they were dialled. When
nothing happens, the fake clock jumps to the next moment anything can, so a
long weekend of waiting takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from voicebot.calls.messages import Ended
from voicebot.calls.placer import NoCapacity, PlacerEvent
from voicebot.campaign.runner import CampaignRun, RunOptions

DATA = Path(__file__).parent / "data" / "campaign"
UTC = UTC


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()

    def __call__(self) -> float:
        return self.t


class FakeTrunk:
    """Plays each number's planned calls: a list of (outcome, seconds) per E.164 number, one per attempt."""

    workers = 1

    def __init__(
        self, clock: FakeClock, plans: dict[str, list[tuple[str, float]]], capacity: int, next_due: Callable[[], float | None]
    ) -> None:
        self.clock = clock
        self.plans = {number: list(calls) for number, calls in plans.items()}
        self.capacity = self.concurrency = capacity
        self.next_due = next_due
        self.dialled: list[tuple[float, str, str]] = []  # (fake time, number, attempt id)
        self._ends: list[tuple[float, int, Ended]] = []
        self._order = itertools.count()

    @property
    def free_slots(self) -> int:
        return min(self.capacity, self.concurrency) - len(self._ends)

    def dial(self, attempt_id: str, number: str, contact: tuple[tuple[str, str], ...] = (), keys_after_answer: str = "") -> int:
        if self.free_slots <= 0:
            raise NoCapacity("the fake trunk is full")
        assert self.plans.get(number), f"{number} was dialled more often than its plan allows ({attempt_id})"
        outcome, seconds = self.plans[number].pop(0)
        answered = outcome not in ("busy", "no_answer")
        # an answered call's record comes on its Ended, as a worker sends it: no file is written anywhere
        record = {"path": ["greeting", outcome], "slots": {"number": number}, "transcript": []} if answered else None
        ended = Ended(
            attempt_id,
            "answered" if answered else outcome,
            200 if answered else {"busy": 486, "no_answer": 487}[outcome],
            "",
            100,
            int(seconds * 1000) if answered else 0,
            outcome if answered else None,
            "remote",
            0,
            0,
            0,
            record=record,
        )
        self.dialled.append((self.clock(), number, attempt_id))
        heapq.heappush(self._ends, (self.clock() + seconds, next(self._order), ended))
        return 0

    def hangup(self, attempt_id: str) -> None:
        raise AssertionError(f"nothing in this test hangs up a call ({attempt_id})")

    def next_event(self, timeout_s: float) -> PlacerEvent | None:
        now = self.clock()
        wake = [self._ends[0][0]] if self._ends else []
        due = self.next_due()
        if due is not None and self.free_slots > 0:
            wake.append(max(due, now + timeout_s))  # due now: the run's next loop, as a real poll would wait
        if wake:
            self.clock.t = max(now, min(wake))
        if self._ends and self._ends[0][0] <= self.clock():
            return PlacerEvent(0, None, self.clock(), heapq.heappop(self._ends)[2])
        return None

    def __enter__(self) -> FakeTrunk:
        return self

    def __exit__(self, *exc: object) -> None:
        assert not self._ends, "the run ended with calls still up"


def _dialplan(tmp_path: Path) -> Path:
    text = (DATA / "campaign.yaml").read_text()
    text = text.replace(
        'calling_window: {start: "00:00", end: "24:00", days: [mon, tue, wed, thu, fri, sat, sun], timezone: UTC}',
        'calling_window: {start: "09:00", end: "18:00", days: [mon, tue, wed, thu, fri], timezone: contact}',
    )
    text = text.replace("delays: {busy: 1s, no_answer: 1s, worker_lost: 1s, interrupted: 0s}", "delays: {busy: 10m, no_answer: 2h}")
    text = text.replace("  default_region: US\n", "  default_region: US\n  contacts: {dnc_file: dnc.txt}\n")
    assert "09:00" in text and "10m" in text and "dnc_file" in text, "the base dialplan changed: update this test"
    path = tmp_path / "clock.yaml"
    path.write_text(text)
    (tmp_path / "dnc.txt").write_text("# asked not to be called\n+1 646 555 0102\n")
    return path


CONTACTS = """phone,first_name
+1 212 555 0100,NewYork
+7 495 123 45 67,Moscow
+81 3 1234 5678,Tokyo
+1 415 555 0101,SanFrancisco
+1 646 555 0102,OnTheDncList
"""

NY, MOSCOW, TOKYO, SF, DNC = "+12125550100", "+74951234567", "+81312345678", "+14155550101", "+16465550102"
ZONES = {NY: "America/New_York", MOSCOW: "Europe/Moscow", TOKYO: "Asia/Tokyo", SF: "America/Los_Angeles"}
PLANS = {
    NY: [("busy", 2), ("busy", 2), ("busy", 2)],  # retried after 10 min until max_attempts (3)
    MOSCOW: [("no_answer", 30), ("meeting_booked", 90)],  # the 2 h retry falls after 18:00 in Moscow
    TOKYO: [("meeting_booked", 60)],  # 22:00 in Tokyo at the start
    SF: [("customer_hangup", 20)],  # 06:00 in San Francisco at the start
    DNC: [],
}


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[tuple[CampaignRun, FakeTrunk, FakeClock]]:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(CONTACTS)
    clock = FakeClock(datetime(2026, 6, 12, 13, 0, tzinfo=UTC))  # a Friday: 09:00 in New York, 16:00 in Moscow
    trunks: list[FakeTrunk] = []

    def pool_factory(concurrency: int) -> contextlib.AbstractContextManager[FakeTrunk]:
        trunks.append(FakeTrunk(clock, PLANS, concurrency, lambda: run.store.next_due_at()))
        return trunks[-1]

    options = RunOptions(dialplan=_dialplan(tmp_path), db=tmp_path / "clock.db", contacts=contacts, broker=None)
    run = CampaignRun(options, clock=clock, monotonic=clock, pool_factory=pool_factory)
    run.prepare()
    try:
        summary = run.run()
        assert summary["pending"] == 0 and run.progress.state == "finished", summary
        (trunk,) = trunks
        yield run, trunk, clock
    finally:
        run.close()


def at(day: int, hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


def test_calls_follow_each_contacts_window_and_the_retry_delays(campaign) -> None:
    _, trunk, _ = campaign
    dialled = [(number, datetime.fromtimestamp(t, UTC)) for t, number, _ in trunk.dialled]
    expected = [
        (NY, at(12, 13)),  # Friday 09:00 New York: open
        (MOSCOW, at(12, 13)),  # 16:00 Moscow: open
        (NY, at(12, 13, 10, 2)),  # busy ended 2 s in; retried 10 min later
        (NY, at(12, 13, 20, 4)),
        (SF, at(12, 16)),  # 09:00 in San Francisco
        (TOKYO, at(15, 0)),  # Monday 09:00 in Tokyo (Saturday 09:00 there is the weekend)
        (MOSCOW, at(15, 6)),  # no answer at 16:00:30, the 2 h retry (18:00:30) is after hours: Monday 09:00
    ]
    assert [n for n, _ in dialled] == [n for n, _ in expected], dialled
    for (number, got), (_, want) in zip(dialled, expected):
        # the run paces set-ups at calls_per_second (20/s): a call may leave a few 50 ms ticks late
        assert want <= got <= want + timedelta(seconds=1), (number, got, want)


def test_no_call_is_placed_outside_the_contacts_local_window(campaign) -> None:
    _, trunk, _ = campaign
    for t, number, _ in trunk.dialled:
        local = datetime.fromtimestamp(t, ZoneInfo(ZONES[number]))
        assert local.weekday() < 5 and 9 <= local.hour < 18, (number, local)
    assert DNC not in {number for _, number, _ in trunk.dialled}


def test_every_contact_ends_with_the_attempts_its_plan_and_policy_give(campaign) -> None:
    run, trunk, _ = campaign
    attempts: dict[str, list[str]] = {}
    for row in run.store.export_rows():  # one row per attempt, in attempt order
        attempts.setdefault(row["phone"], []).append(row["outcome"])
    assert attempts == {
        NY: ["busy", "busy", "busy"],
        MOSCOW: ["no_answer", "meeting_booked"],
        TOKYO: ["meeting_booked"],
        SF: ["customer_hangup"],
    }
    assert run.store.summary()["dnc"] == 1
    assert all(not calls for calls in trunk.plans.values())  # every planned call was placed, none more
    ids = [attempt_id for _, _, attempt_id in trunk.dialled]
    assert len(set(ids)) == len(ids)  # a retry is a new attempt


def test_the_store_takes_each_result_from_the_ended_message(campaign) -> None:
    run, _, _ = campaign
    answered = [r for r in run.store.call_rows() if r.outcome in ("meeting_booked", "customer_hangup")]
    assert len(answered) == 3
    for row in answered:
        assert row.path == ("greeting", row.outcome) and row.slots == {"number": row.phone}
        assert row.record is not None and row.record["path"] == ["greeting", row.outcome]
    assert not run.options.calls_dir.exists()  # nothing went through files
