"""The report's charts as plotly figures (rendered into the page by ``html.py``)."""

from __future__ import annotations

import plotly.graph_objects as go

from voicebot.report.analytics import GroupStats
from voicebot.report.script_graph import ScriptShape
from voicebot.report.script_stats import FunnelStep, NodeStats, ScriptAnalytics

# plotly's default template adds ~10 kB of JSON to every figure; the page styles itself.
_LAYOUT = {
    "template": "none",
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
}
_BLUE = "#2b6cb0"
_GREEN = "#2f855a"
_GREY = "#a0aec0"


def outcomes_figure(outcomes: list[tuple[str, int]]) -> go.Figure:
    names = [o for o, _ in outcomes][::-1]
    counts = [n for _, n in outcomes][::-1]
    fig = go.Figure(go.Bar(x=counts, y=names, orientation="h", marker_color=_BLUE, text=counts, textposition="auto"))
    fig.update_layout(**_LAYOUT, title="Outcomes (ended attempts)", height=max(220, 28 * len(names) + 80))
    fig.update_yaxes(automargin=True)
    return fig


def funnel_figure(funnel: list[FunnelStep]) -> go.Figure:
    labels = [s.label if s.node is None else f"▸ {s.label}" for s in funnel]
    fig = go.Figure(go.Funnel(y=labels, x=[s.count for s in funnel], textinfo="value+percent initial", marker_color=_BLUE))
    fig.update_layout(**_LAYOUT, title="Drop-off along the main path", height=max(260, 40 * len(funnel) + 80))
    fig.update_yaxes(automargin=True)
    return fig


def hours_figure(hours: list[GroupStats], zone_name: str) -> go.Figure:
    keys = [h.key for h in hours]
    fig = go.Figure(
        [
            go.Bar(name="attempts", x=keys, y=[h.attempts for h in hours], marker_color=_GREY),
            go.Bar(name="answered", x=keys, y=[h.answered for h in hours], marker_color=_BLUE),
            go.Bar(name="goals", x=keys, y=[h.goals for h in hours], marker_color=_GREEN),
        ]
    )
    fig.update_layout(
        **_LAYOUT,
        title=f"Calls by hour of day ({zone_name})",
        barmode="group",
        height=320,
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
    )
    return fig


def intent_heatmap(stats: ScriptAnalytics) -> go.Figure:
    """Rows: nodes where people answered; columns: what the engine made of the answers; cells:
    the share of the node's answers (no match and no input stand out as columns)."""
    rows = [n for n in stats.nodes if n.answers]
    columns = stats.intents
    z, text = [], []
    for n in rows:
        total = sum(n.results.values()) or 1
        z.append([n.results.get(c, 0) / total for c in columns])
        text.append([str(n.results.get(c, "")) for c in columns])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=[n.node for n in rows],
            text=text,
            texttemplate="%{text}",
            colorscale="YlOrRd",
            zmin=0,
            zmax=1,
            colorbar={"title": "share", "tickformat": ".0%"},
            hovertemplate="%{y} → %{x}: %{text} (%{z:.0%})<extra></extra>",
        )
    )
    fig.update_layout(**_LAYOUT, title="What people answered at each node", height=max(260, 30 * len(rows) + 140))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(tickangle=-40, automargin=True)
    return fig


def script_graph_figure(shape: ScriptShape, stats: ScriptAnalytics, metric: str) -> go.Figure:
    """The script's nodes where the layout puts them, coloured by ``metric``: ``reach`` (the
    share of conversations that entered the node) or ``no_match`` (the share of answers at the
    node that no intent matched). A thick grey ring: never reached; a grey fill: nothing to rate."""
    pos = shape.positions()
    by_node = {n.node: n for n in stats.nodes}
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for e in shape.edges:
        if e.source == e.target:
            continue
        (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
        edge_x += [x0, x1, None]
        edge_y += [y0, y1, None]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#cbd5e0", "width": 1}, hoverinfo="skip", showlegend=False))
    for e in shape.edges:
        if e.source != e.target:
            (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
            fig.add_annotation(
                x=x1,
                y=y1,
                ax=x0,
                ay=y0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                text="",
                showarrow=True,
                arrowhead=2,
                arrowsize=1,
                arrowwidth=1,
                arrowcolor="#cbd5e0",
                standoff=14,
            )
    values = {n: _metric(by_node.get(n), stats.conversations, metric) for n in shape.nodes}
    never = set(stats.never_reached)
    title, scale = (
        ("Script graph: reach (share of conversations)", "Blues")
        if metric == "reach"
        else ("Script graph: no-match rate (share of answers at the node)", "Reds")
    )
    # Nodes the metric says nothing about (no-match at a node that does not listen, or never
    # answered) are grey, so a pale colour always means "low", never "no data".
    rated = [n for n in shape.nodes if values[n] is not None]
    unrated = [n for n in shape.nodes if values[n] is None]
    for members, coloured in ((unrated, False), (rated, True)):
        if not members:
            continue
        marker = {
            "size": 22,
            "line": {"width": [3 if n in never else 1 for n in members], "color": [_GREY if n in never else "#4a5568" for n in members]},
        }
        if coloured:
            marker.update(
                color=[values[n] for n in members], colorscale=scale, cmin=0, cmax=1, showscale=True, colorbar={"tickformat": ".0%"}
            )
        else:
            marker.update(color="#edf2f7")
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in members],
                y=[pos[n][1] for n in members],
                mode="markers+text",
                text=[n if values[n] is None else f"{n} {values[n]:.0%}" for n in members],
                textposition="bottom center",
                textfont={"size": 10},
                marker=marker,
                customdata=[_hover(by_node.get(n), shape.kinds.get(n, "")) for n in members],
                hovertemplate="<b>%{text}</b><br>%{customdata}<extra></extra>",
                showlegend=False,
            )
        )
    xs = [p[0] for p in pos.values()] or [0]
    fig.update_layout(**_LAYOUT, title=title, height=110 * (1 - min(p[1] for p in pos.values())) + 120 if pos else 300)
    fig.update_xaxes(visible=False, range=[min(xs) - 1, max(xs) + 1])
    fig.update_yaxes(visible=False)
    return fig


def _metric(node: NodeStats | None, conversations: int, metric: str) -> float | None:
    if node is None:
        return None
    if metric == "reach":
        return node.reached / conversations if conversations else 0.0
    return node.no_match_rate


def _hover(node: NodeStats | None, kind: str) -> str:
    if node is None:
        return kind
    parts = [f"{kind}: reached by {node.reached} call(s), {node.visits} visit(s)"]
    if node.answers:
        parts.append(f"answers {node.answers}: no match {node.no_match_rate:.0%}, no input {node.no_input_rate:.0%}")
        top = ", ".join(f"{k} {v}" for k, v in list(node.results.items())[:5])
        parts.append(f"heard: {top}")
    if node.exits:
        parts.append("then: " + ", ".join(f"{k} {v}" for k, v in list(node.exits.items())[:4]))
    return "<br>".join(parts)
