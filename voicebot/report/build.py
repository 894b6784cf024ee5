"""Everything a report shows, computed once; the HTML page and the CSV files only render it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voicebot.dialplan import LoadedDialplan, load_dialplan
from voicebot.report.analytics import (
    DEFAULT_GOALS,
    GroupStats,
    Summary,
    by_hour,
    by_tag,
    outcome_counts,
    summarize,
)
from voicebot.report.calls import CallView, call_view
from voicebot.report.script_graph import ScriptShape
from voicebot.report.script_stats import ScriptAnalytics, script_analytics
from voicebot.report.source import CampaignData, ReportError


@dataclass(frozen=True)
class ReportOptions:
    goals: tuple[str, ...] = DEFAULT_GOALS
    timezone: str = "UTC"  # hours of the day are counted in this zone
    objections: tuple[str, ...] | None = None  # default: nodes named objection*
    main_path: tuple[str, ...] | None = None  # default: the shortest way to a goal around objections


@dataclass(frozen=True)
class Report:
    data: CampaignData
    dialplan: Path | None
    shape: ScriptShape | None
    summary: Summary
    outcomes: list[tuple[str, int]]
    tags: list[GroupStats]
    hours: list[GroupStats]
    script: ScriptAnalytics
    calls: list[CallView]
    timezone: str
    generated_at: float
    notes: list[str]  # what the reader should know about gaps in the data


def find_dialplan(data: CampaignData, explicit: Path | None) -> tuple[LoadedDialplan | None, list[str]]:
    """The dialplan given, else the one the run recorded (as written, then next to the store)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ReportError(f"{explicit}: no such dialplan file", code="report-no-dialplan")
        return load_dialplan(explicit), []
    if not data.dialplan:
        return None, ["The store does not name its dialplan: pass --dialplan to see the script graph and nodes never reached."]
    recorded = Path(data.dialplan)
    for candidate in (recorded, data.db.parent / recorded):
        if candidate.is_file():
            return load_dialplan(candidate), []
    return None, [
        f"The campaign's dialplan {data.dialplan} was not found: pass --dialplan to see the script graph and nodes never reached."
    ]


def check_matches(data: CampaignData, loaded: LoadedDialplan) -> None:
    """Refuse a dialplan the calls cannot have run: another campaign, or nodes the calls went through that it lacks."""
    name = loaded.dialplan.campaign.name
    if data.campaign and name != data.campaign:
        raise ReportError(
            f"{loaded.path} is the dialplan of campaign '{name}', but {data.db} holds campaign '{data.campaign}'",
            code="report-dialplan-mismatch",
        )
    unknown = sorted({node for call in data.calls for node in call.path} - set(loaded.graph.nodes))
    if unknown:
        raise ReportError(
            f"{loaded.path} has no node(s) {', '.join(unknown)} that calls in {data.db} went through:"
            " give the dialplan this campaign ran with",
            code="report-dialplan-mismatch",
        )


def build_report(
    data: CampaignData, loaded: LoadedDialplan | None, options: ReportOptions = ReportOptions(), notes: list[str] | None = None
) -> Report:
    try:
        zone = ZoneInfo(options.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone '{options.timezone}' (use an IANA name such as Europe/Berlin)", code="bad-argument") from exc
    notes = list(notes or [])
    shape = None
    if loaded is not None:
        check_matches(data, loaded)
        shape = ScriptShape.of(loaded.graph)
        for flag, given in (("--main-path", options.main_path), ("--objection", options.objections)):
            unknown = [n for n in given or () if n not in loaded.graph.nodes]
            if unknown:
                raise ReportError(f"{flag}: {loaded.path} has no node(s) {', '.join(unknown)}", code="bad-argument")
    script = script_analytics(data, shape, options.goals, options.objections, options.main_path)
    if script.conversations > script.with_decisions:
        notes.append(
            f"{script.conversations - script.with_decisions} of {script.conversations} conversations were recorded"
            " without the script engine's decisions: their answers are missing from the intent and no-match numbers."
        )
    return Report(
        data=data,
        dialplan=loaded.path if loaded else None,
        shape=shape,
        summary=summarize(data, options.goals),
        outcomes=outcome_counts(data),
        tags=by_tag(data, options.goals),
        hours=by_hour(data, zone, options.goals),
        script=script,
        calls=[call_view(c) for c in data.calls],
        timezone=options.timezone,
        generated_at=time.time(),
        notes=notes,
    )
