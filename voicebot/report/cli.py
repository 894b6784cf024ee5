"""`voicebot report`: a campaign's numbers in the terminal, as one HTML file, and as CSV tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from voicebot.report.analytics import DEFAULT_GOALS
from voicebot.report.build import ReportOptions, build_report, find_dialplan
from voicebot.report.source import load_campaign


def register_cli(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="campaign analytics: summary, script analytics, calls (HTML and CSV)")
    r.add_argument("db", type=Path, help="the campaign store (.db) a run wrote")
    r.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML report (charts and tables)")
    r.add_argument("--csv", type=Path, metavar="DIR", help="write the report's tables as CSV files into DIR")
    r.add_argument("--dialplan", type=Path, metavar="FILE", help="the campaign's dialplan (default: the one the store names)")
    r.add_argument(
        "--goal",
        action="append",
        metavar="OUTCOME",
        help=f"an outcome that counts as a conversion (repeatable; default: {', '.join(DEFAULT_GOALS)})",
    )
    r.add_argument("--timezone", default="UTC", help="time zone for hours of the day (IANA name; default UTC)")
    r.add_argument(
        "--objection", action="append", metavar="NODE", help="an objection-handling node (repeatable; default: nodes named objection*)"
    )
    r.add_argument(
        "--main-path", metavar="NODE,NODE,...", help="the funnel's steps (default: the shortest way to a goal around objections)"
    )
    r.add_argument("--max-calls", type=int, default=500, help="calls listed in the HTML page, the latest first (0: all; CSV has all)")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from voicebot.report.csvfiles import write_csv
    from voicebot.report.html import render_html

    out = Console(highlight=False)
    started = time.perf_counter()
    data = load_campaign(args.db)
    loaded, notes = find_dialplan(data, args.dialplan)
    options = ReportOptions(
        goals=tuple(args.goal) if args.goal else DEFAULT_GOALS,
        timezone=args.timezone,
        objections=tuple(args.objection) if args.objection else None,
        main_path=tuple(n.strip() for n in args.main_path.split(",") if n.strip()) if args.main_path else None,
    )
    report = build_report(data, loaded, options, notes)
    for note in report.notes:
        out.print(escape(f"note: {note}"), style="yellow", soft_wrap=True)
    s = report.summary
    out.print(
        escape(
            f"{s.campaign or args.db}: {s.contacts} contacts, {s.attempts} attempts, {s.answered} answered "
            f"({_pct(s.connect_rate)}), {s.conversations} conversations, {s.goals} goals, conversion {_pct(s.conversion_rate)}, "
            f"{s.handoffs} handoffs"
        ),
        soft_wrap=True,
    )
    if s.ended == 0:
        out.print("no calls yet")
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        page = render_html(report, args.max_calls)
        args.html.write_text(page, encoding="utf-8")
        out.print(escape(f"wrote {args.html} ({len(page.encode()) / 1e6:.1f} MB)"))
    if args.csv is not None:
        files = write_csv(report, args.csv)
        out.print(escape(f"wrote {len(files)} CSV files to {args.csv}/: {', '.join(f.name for f in files)}"), soft_wrap=True)
    out.print(f"[dim]{time.perf_counter() - started:.2f} s[/dim]")
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"
