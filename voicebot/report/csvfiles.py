"""The report's tables as CSV files, for spreadsheets and BI tools: one file per table, rates as
fractions (0.25, not "25%"), times ISO-8601 UTC, empty cells where a rate has no calls."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from voicebot.report.analytics import GroupStats
from voicebot.report.build import Report

FILES = ("summary", "outcomes", "by_tag", "by_hour", "nodes", "funnel", "objections", "unmatched_phrases", "calls")


def write_csv(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    s = report.summary
    st = report.script
    tables: dict[str, tuple[Sequence[str], Iterable[Sequence]]] = {
        "summary": (
            ("metric", "value"),
            [(k, _cell(v)) for k, v in asdict(s).items() if k not in ("first_call_at", "last_call_at", "goal_outcomes")]
            + [
                ("goal_outcomes", " ".join(s.goal_outcomes)),
                ("first_call_at", _iso(s.first_call_at)),
                ("last_call_at", _iso(s.last_call_at)),
            ],
        ),
        "outcomes": (("outcome", "calls"), report.outcomes),
        "by_tag": (_GROUP_HEAD, [_group_row(r) for r in report.tags]),
        "by_hour": (_GROUP_HEAD, [_group_row(r) for r in report.hours]),
        "nodes": (
            (
                "node",
                "kind",
                "reached",
                "reach_rate",
                "visits",
                "answers",
                "no_match",
                "no_match_rate",
                "no_input",
                "no_input_rate",
                "recognised",
                "exits",
            ),
            [
                (
                    n.node,
                    n.kind,
                    n.reached,
                    _cell(n.reached / st.conversations if st.conversations else None),
                    n.visits,
                    n.answers,
                    n.no_match,
                    _cell(n.no_match_rate),
                    n.no_input,
                    _cell(n.no_input_rate),
                    _pairs(n.results),
                    _pairs(n.exits),
                )
                for n in st.nodes
            ],
        ),
        "funnel": (("step", "node", "calls"), [(f.label, f.node or "", f.count) for f in st.funnel]),
        "objections": (
            ("node", "reached", "came_from", "answers", "next_nodes", "outcomes", "goals"),
            [
                (o.node, o.reached, _pairs(o.came_from), _pairs(o.answers), _pairs(o.next_nodes), _pairs(o.outcomes), o.goals)
                for o in st.objections
            ],
        ),
        "unmatched_phrases": (
            ("node", "text", "count", "result", "calls"),
            [(u.node, u.text, u.count, u.result, " ".join(u.calls)) for u in st.unmatched],
        ),
        "calls": (
            ("attempt_id", "started_at", "phone", "tags", "outcome", "sip_code", "talk_s", "handoff", "path", "recording", "transcript"),
            [
                (
                    c.attempt_id,
                    _iso(c.started_at),
                    c.phone,
                    " ".join(c.tags),
                    c.outcome,
                    _cell(c.sip_code),
                    c.talk_s,
                    c.handoff,
                    " > ".join(c.path),
                    c.recording or "",
                    " | ".join(
                        f"{'' if line.at_ms is None else f'{line.at_ms / 1000:.1f}s '}{line.speaker}: {line.text}" for line in c.lines
                    ),
                )
                for c in report.calls
            ],
        ),
    }
    written = []
    for name in FILES:
        head, rows = tables[name]
        path = out_dir / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(head)
            writer.writerows(rows)
        written.append(path)
    return written


_GROUP_HEAD = ("key", "contacts", "attempts", "answered", "connect_rate", "conversations", "goals", "goal_rate", "handoffs", "avg_talk_s")


def _group_row(r: GroupStats) -> tuple:
    return (
        r.key,
        r.contacts,
        r.attempts,
        r.answered,
        _cell(r.connect_rate),
        r.conversations,
        r.goals,
        _cell(r.goal_rate),
        r.handoffs,
        _cell(r.avg_talk_s),
    )


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    return value


def _pairs(counts: dict[str, int]) -> str:
    return "; ".join(f"{k}={v}" for k, v in counts.items())


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
