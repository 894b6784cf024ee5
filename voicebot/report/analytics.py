"""Campaign numbers: what was dialled, who answered, how calls ended, by tag and by hour.

Pure functions over ``CampaignData``; no I/O. Definitions the tables rely on:

* an attempt is *answered* when a call session ran (the SIP leg was answered);
* a *conversation* is an answered call that was not an answering machine;
* *connect rate* = answered / ended attempts;
* a *goal* is a call whose outcome is one of the goal outcomes (``meeting_booked`` unless told);
  *conversion* = contacts with a goal / contacts with a conversation;
* a *handoff* is a call the bot handed (or tried to hand) to an operator;
* *calls per hour* = attempts / clock hours in which the campaign dialled at all, so nights
  and weekends between calling windows do not dilute it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from voicebot.report.source import CallRow, CampaignData

DEFAULT_GOALS = ("meeting_booked",)


@dataclass(frozen=True)
class Summary:
    campaign: str
    contacts: int
    contacts_done: int
    contacts_pending: int
    contacts_dnc: int
    attempts: int
    ended: int
    answered: int
    conversations: int
    voicemail: int
    connect_rate: float | None
    goals: int
    contacts_converted: int
    conversion_rate: float | None  # of contacts with a conversation
    handoffs: int
    handoffs_completed: int
    avg_talk_s: float | None  # over answered calls
    calls_per_hour: float | None
    first_call_at: float | None
    last_call_at: float | None
    goal_outcomes: tuple[str, ...]


@dataclass(frozen=True)
class GroupStats:
    """One row of a breakdown (a tag, an hour of the day)."""

    key: str
    contacts: int
    attempts: int
    answered: int
    conversations: int
    goals: int
    handoffs: int
    avg_talk_s: float | None

    @property
    def connect_rate(self) -> float | None:
        return ratio(self.answered, self.attempts)

    @property
    def goal_rate(self) -> float | None:
        """Goals per conversation."""
        return ratio(self.goals, self.conversations)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def is_handoff(call: CallRow) -> bool:
    return bool(call.handoff) or call.outcome in ("handoff", "handoff_failed") or bool((call.record or {}).get("handoff"))


def handoff_completed(call: CallRow) -> bool:
    if call.handoff:
        return call.handoff in ("transferred", "bridged")
    return call.outcome == "handoff"


def summarize(data: CampaignData, goals: Iterable[str] = DEFAULT_GOALS) -> Summary:
    goals = tuple(goals)
    calls = data.calls
    ended = [c for c in calls if c.ended]
    answered = [c for c in ended if c.answered]
    conversations = [c for c in answered if c.conversation]
    goal_calls = [c for c in ended if c.outcome in goals]
    talked = {c.contact_id for c in conversations}
    converted = {c.contact_id for c in goal_calls}
    statuses = Counter(c.status for c in data.contacts)
    starts = [c.started_at for c in calls]
    ends = [c.ended_at for c in calls if c.ended_at is not None]
    return Summary(
        campaign=data.campaign,
        contacts=len(data.contacts),
        contacts_done=statuses["done"],
        contacts_pending=statuses["pending"] + statuses["in_call"],
        contacts_dnc=statuses["dnc"],
        attempts=len(calls),
        ended=len(ended),
        answered=len(answered),
        conversations=len(conversations),
        voicemail=sum(c.outcome == "voicemail" for c in answered),
        connect_rate=ratio(len(answered), len(ended)),
        goals=len(goal_calls),
        contacts_converted=len(converted),
        conversion_rate=ratio(len(converted), len(talked)),
        handoffs=sum(is_handoff(c) for c in ended),
        handoffs_completed=sum(handoff_completed(c) for c in ended if is_handoff(c)),
        avg_talk_s=_avg_talk_s(answered),
        calls_per_hour=ratio(len(calls), len({int(t // 3600) for t in starts})),
        first_call_at=min(starts) if starts else None,
        last_call_at=max(ends) if ends else None,
        goal_outcomes=goals,
    )


def outcome_counts(data: CampaignData) -> list[tuple[str, int]]:
    """Ended attempts per outcome, the most frequent first."""
    counts = Counter(c.outcome or "unknown" for c in data.calls if c.ended)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def by_tag(data: CampaignData, goals: Iterable[str] = DEFAULT_GOALS) -> list[GroupStats]:
    """A contact with several tags counts under each; untagged contacts under "(no tag)"."""
    return _group(data.calls, lambda c: c.tags or ("(no tag)",), tuple(goals))


def by_hour(data: CampaignData, zone: tzinfo, goals: Iterable[str] = DEFAULT_GOALS) -> list[GroupStats]:
    """Per hour of the day (in ``zone``) the attempt started, for hours with calls, in clock order."""
    rows = _group(data.calls, lambda c: (f"{datetime.fromtimestamp(c.started_at, zone).hour:02d}:00",), tuple(goals))
    return sorted(rows, key=lambda r: r.key)


def _group(calls: Iterable[CallRow], keys: Callable[[CallRow], Iterable[str]], goals: tuple[str, ...]) -> list[GroupStats]:
    buckets: dict[str, list[CallRow]] = {}
    for call in calls:
        for key in keys(call):
            buckets.setdefault(key, []).append(call)
    rows = []
    for key, members in buckets.items():
        ended = [c for c in members if c.ended]
        answered = [c for c in ended if c.answered]
        rows.append(
            GroupStats(
                key=key,
                contacts=len({c.contact_id for c in members}),
                attempts=len(ended),
                answered=len(answered),
                conversations=sum(c.conversation for c in answered),
                goals=sum(c.outcome in goals for c in ended),
                handoffs=sum(is_handoff(c) for c in ended),
                avg_talk_s=_avg_talk_s(answered),
            )
        )
    return sorted(rows, key=lambda r: (-r.attempts, r.key))


def _avg_talk_s(answered: list[CallRow]) -> float | None:
    return sum(c.talk_ms for c in answered) / len(answered) / 1000 if answered else None
