"""The report as one self-contained HTML file: plotly.js inlined once, every chart and table in the page.

It opens from disk, by e-mail or from a ticket with no network: no CDN, no external
files (recordings are links to where the run wrote them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from voicebot.report import charts
from voicebot.report.analytics import GroupStats
from voicebot.report.build import Report
from voicebot.report.calls import CallView, recording_href

Chart = Callable[[go.Figure, str], str]  # a figure and its element id -> its HTML

MAX_CALLS = 500  # calls shown in the page (the latest); every call is in calls.csv

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a202c; margin: 0; background: #f7fafc; }
header { background: #1a365d; color: white; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: #cbd5e0; }
nav { padding: 8px 28px; background: #e2e8f0; position: sticky; top: 0; z-index: 10; }
nav a { margin-right: 16px; color: #2b6cb0; text-decoration: none; }
main { padding: 8px 28px 40px; }
section { background: white; border-radius: 6px; padding: 12px 18px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 6px 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card span { color: #4a5568; font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f7fafc; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
.grid > div { min-width: 0; }  /* else a chart widens its grid cell and pushes the table out */
.note { background: #fffaf0; border-left: 4px solid #dd6b20; padding: 6px 12px; margin: 8px 0; }
.empty { color: #4a5568; font-style: italic; }
details summary { cursor: pointer; }
.bot { color: #2c5282; } .customer { color: #22543d; } .call { color: #718096; font-style: italic; }
.muted { color: #718096; }
"""


def render_html(report: Report, max_calls: int = MAX_CALLS) -> str:
    zone = ZoneInfo(report.timezone)
    s = report.summary
    title = f"Campaign report: {report.data.campaign or report.data.db.name}"
    charts_html: list[str] = []

    def chart(fig: go.Figure, div_id: str) -> str:
        charts_html.append(div_id)
        return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False, "responsive": True})

    has_calls = s.ended > 0
    sections = [
        _summary_section(report, zone),
        _outcomes_section(report, chart) if has_calls else "",
        _tags_section(report) if has_calls else "",
        _hours_section(report, chart) if has_calls else "",
        _script_section(report, chart),
        _calls_section(report, zone, max_calls) if report.calls else "",
    ]
    period = ""
    if s.first_call_at is not None:
        period = f"Calls from {_time(s.first_call_at, zone)} to {_time(s.last_call_at or s.first_call_at, zone)} ({report.timezone})"
    head = [
        f"Store: {report.data.db}",
        f"Dialplan: {report.dialplan}" if report.dialplan else "Dialplan: not given",
        period,
        f"Generated {_time(report.generated_at, zone)} ({report.timezone})",
    ]
    nav = "".join(
        f'<a href="#{a}">{escape(t)}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("outcomes", "Outcomes"),
            ("tags", "By tag"),
            ("hours", "By hour"),
            ("script", "Script"),
            ("calls", "Calls"),
        )
    )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{_CSS}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>',
            f"<header><h1>{escape(title)}</h1>",
            "".join(f"<p>{escape(line)}</p>" for line in head if line),
            "</header>",
            f"<nav>{nav}</nav><main>",
            "".join(f'<div class="note">{escape(n)}</div>' for n in report.notes),
            *sections,
            "</main>",
            # Read by tests and by anyone checking a page: how many charts plotly actually drew.
            (
                f"<script>document.body.dataset.chartsExpected = {len(charts_html)}; window.addEventListener('load', function () {{"
                " var drawn = 0; document.querySelectorAll('.js-plotly-plot').forEach(function (p) {"
                " if (p.querySelector('.main-svg')) { drawn += 1; } }); document.body.dataset.chartsRendered = drawn; });</script>"
            ),
            "</body></html>\n",
        ]
    )


# --- sections ---------------------------------------------------------------------------------


def _summary_section(report: Report, zone: ZoneInfo) -> str:
    s = report.summary
    goals = " / ".join(s.goal_outcomes)
    cards = [
        ("contacts", str(s.contacts)),
        ("attempts", str(s.attempts)),
        ("connect rate", _pct(s.connect_rate)),
        ("conversations", str(s.conversations)),
        (f"goals ({goals})", str(s.goals)),
        ("conversion", _pct(s.conversion_rate)),
        ("handoffs", f"{s.handoffs} ({s.handoffs_completed} connected)"),
        ("avg talk time", _secs(s.avg_talk_s)),
        ("calls per hour", _num(s.calls_per_hour)),
    ]
    body = (
        '<div class="cards">' + "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in cards) + "</div>"
    )
    if s.ended == 0:
        body += f'<p class="empty">No calls yet: {s.contacts} contact(s) imported, none dialled.</p>'
    rows = [
        ("Contacts", s.contacts),
        ("… done", s.contacts_done),
        ("… still to call", s.contacts_pending),
        ("… on the DNC list", s.contacts_dnc),
        ("Attempts", s.attempts),
        ("Ended attempts", s.ended),
        ("Answered", s.answered),
        ("… answering machines", s.voicemail),
        ("Conversations", s.conversations),
        ("Connect rate (answered / ended)", _pct(s.connect_rate)),
        (f"Calls ending {goals}", s.goals),
        ("Contacts converted", s.contacts_converted),
        ("Conversion (contacts converted / contacts talked to)", _pct(s.conversion_rate)),
        ("Handoffs to an operator", s.handoffs),
        ("… connected", s.handoffs_completed),
        ("Average talk time (answered)", _secs(s.avg_talk_s)),
        ("Calls per hour (hours with calls)", _num(s.calls_per_hour)),
    ]
    return _section("summary", "Summary", body + _table(("", "value"), rows, numeric=(1,)))


def _outcomes_section(report: Report, chart: Chart) -> str:
    total = sum(n for _, n in report.outcomes) or 1
    table = _table(("outcome", "calls", "share"), [(o, n, _pct(n / total)) for o, n in report.outcomes], numeric=(1, 2))
    return _section(
        "outcomes",
        "Outcomes",
        f'<div class="grid"><div>{chart(charts.outcomes_figure(report.outcomes), "chart-outcomes")}</div><div>{table}</div></div>',
    )


def _group_rows(rows: list[GroupStats]) -> list[tuple]:
    return [
        (
            r.key,
            r.contacts,
            r.attempts,
            r.answered,
            _pct(r.connect_rate),
            r.conversations,
            r.goals,
            _pct(r.goal_rate),
            r.handoffs,
            _secs(r.avg_talk_s),
        )
        for r in rows
    ]


_GROUP_HEAD = (
    "",
    "contacts",
    "attempts",
    "answered",
    "connect rate",
    "conversations",
    "goals",
    "goals / conversation",
    "handoffs",
    "avg talk",
)


def _tags_section(report: Report) -> str:
    return _section(
        "tags",
        "By tag",
        '<p class="muted">A contact with several tags counts under each.</p>'
        + _table(("tag", *_GROUP_HEAD[1:]), _group_rows(report.tags), numeric=range(1, 10)),
    )


def _hours_section(report: Report, chart: Chart) -> str:
    fig = chart(charts.hours_figure(report.hours, report.timezone), "chart-hours")
    table = _table((f"hour ({report.timezone})", *_GROUP_HEAD[1:]), _group_rows(report.hours), numeric=range(1, 10))
    return _section("hours", "By hour of day", fig + table)


def _script_section(report: Report, chart: Chart) -> str:
    st = report.script
    parts: list[str] = []
    if st.conversations == 0:
        parts.append('<p class="empty">No conversations yet: nothing to say about the script.</p>')
    else:
        parts.append(f"<p>Over {st.conversations} conversation(s) (answered calls, answering machines excluded).</p>")
        parts.append(chart(charts.funnel_figure(st.funnel), "chart-funnel"))
    if report.shape is not None:
        parts.append(chart(charts.script_graph_figure(report.shape, st, "reach"), "chart-graph-reach"))
        parts.append(chart(charts.script_graph_figure(report.shape, st, "no_match"), "chart-graph-nomatch"))
    if any(n.answers for n in st.nodes):
        parts.append(chart(charts.intent_heatmap(st), "chart-heatmap"))
    if st.conversations:
        parts.append("<h3>Nodes</h3>")
        rows = [
            (
                n.node,
                n.kind,
                n.reached,
                _pct(n.reached / st.conversations),
                n.visits,
                n.answers,
                _pct(n.no_match_rate),
                _pct(n.no_input_rate),
                _counts(n.results, 6),
                _counts(n.exits, 4),
            )
            for n in st.nodes
        ]
        parts.append(
            _table(
                ("node", "kind", "reached", "reach", "visits", "answers", "no match", "no input", "recognised", "went on to"),
                rows,
                numeric=range(2, 8),
            )
        )
    if report.shape is not None:
        parts.append("<h3>Nodes never reached</h3>")
        parts.append(
            f"<p>{escape(', '.join(st.never_reached))}</p>" if st.never_reached else '<p class="empty">Every node was reached.</p>'
        )
    if st.objections and st.conversations:
        parts.append("<h3>Objections</h3>")
        rows = [
            (
                o.node,
                o.reached,
                _counts(o.came_from, 4),
                _counts(o.answers, 5),
                _counts(o.next_nodes, 4),
                _counts(o.outcomes, 5),
                f"{o.goals} ({_pct(o.goals / o.reached) if o.reached else '—'})",
            )
            for o in st.objections
        ]
        parts.append(
            _table(("objection", "met", "after", "then said", "went on to", "calls ended", "still reached a goal"), rows, numeric=(1,))
        )
    if st.conversations:
        parts.append("<h3>Answers no intent matched</h3>")
        if st.unmatched:
            parts.append('<p class="muted">Add the frequent ones to the node\'s intents (or a new intent) in the dialplan.</p>')
            rows = [(u.node, u.text, u.count, u.result.replace("_", " "), ", ".join(u.calls)) for u in st.unmatched]
            parts.append(_table(("node", "what the person said", "times", "why", "calls"), rows, numeric=(2,)))
        else:
            parts.append('<p class="empty">None: every answer matched an intent.</p>')
    return _section("script", "Script", "".join(parts))


def _calls_section(report: Report, zone: ZoneInfo, max_calls: int) -> str:
    calls = report.calls[-max_calls:] if max_calls > 0 else report.calls
    note = ""
    if len(calls) < len(report.calls):
        note = f'<p class="muted">The latest {len(calls)} of {len(report.calls)} calls; every call is in calls.csv (--csv).</p>'
    rows = "".join(_call_row(c, report.data.db, zone) for c in reversed(calls))
    head = "".join(f"<th>{h}</th>" for h in ("attempt", "started", "phone", "tags", "outcome", "talk", "path"))
    return _section("calls", "Calls", f"{note}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")


def _call_row(call: CallView, db: Path, zone: ZoneInfo) -> str:
    outcome = call.outcome + (f" (SIP {call.sip_code})" if call.sip_code and call.sip_code != 200 else "")
    if call.handoff:
        outcome += f", handoff {call.handoff}"
    details = ""
    if call.lines or call.recording:
        lines = "".join(
            f'<tr class="{escape(line.speaker)}"><td class="n">{"" if line.at_ms is None else f"{line.at_ms / 1000:.1f} s"}</td>'
            f'<td>{escape(line.speaker)}</td><td>{escape(line.text)}</td><td class="muted">{escape(line.note)}</td></tr>'
            for line in call.lines
        )
        recording = ""
        if call.recording:
            recording = f'<p>Recording: <a href="{escape(recording_href(call.recording, db))}">{escape(call.recording)}</a></p>'
        details = f"<details><summary>transcript</summary>{recording}<table>{lines}</table></details>"
    return (
        f"<tr><td>{escape(call.attempt_id)}</td><td>{escape(_time(call.started_at, zone))}</td><td>{escape(call.phone)}</td>"
        f'<td>{escape(", ".join(call.tags))}</td><td>{escape(outcome)}</td><td class="n">{call.talk_s:.0f} s</td>'
        f"<td>{escape(' → '.join(call.path))}{details}</td></tr>"
    )


# --- helpers ------------------------------------------------------------------------------------


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def _table(head: Sequence[str], rows: Iterable[Sequence], numeric: Iterable[int] = ()) -> str:
    numeric = set(numeric)
    th = "".join(f"<th{' class=n' if i in numeric else ''}>{escape(str(h))}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{escape(str(v))}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _counts(counts: dict[str, int], top: int) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:top])
    return text + (f", … (+{len(items) - top})" if len(items) > top else "")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} s"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _time(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M")
