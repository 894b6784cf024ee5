"""`voicebot report`: the HTML page, the CSV tables and the errors, from a sample campaign."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from voicebot.campaign.store import CampaignStore
from voicebot.cli import main
from voicebot.dialplan import load_dialplan
from voicebot.peers.sample_campaign import build_sample_campaign
from voicebot.report.csvfiles import FILES

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplans" / "demo_en.yaml"
CHARTS = ("chart-outcomes", "chart-hours", "chart-funnel", "chart-graph-reach", "chart-graph-nomatch", "chart-heatmap")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return build_sample_campaign(tmp_path_factory.mktemp("report") / "campaign.db", load_dialplan(DIALPLAN).graph, str(DIALPLAN))


@pytest.fixture(scope="module")
def outputs(db, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("out")
    assert main(["report", str(db), "--html", str(out / "report.html"), "--csv", str(out / "csv")]) == 0
    return out / "report.html", out / "csv"


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_html_is_one_self_contained_file_with_plotly_inlined_once(outputs):
    page = outputs[0].read_text(encoding="utf-8")
    banner = get_plotlyjs()[:200].split("\n")[1]  # "* plotly.js vX.Y.Z"
    assert "plotly.js v" in banner and page.count(banner) == 1
    assert not re.search(r"<script[^>]+src=", page)  # no CDN, nothing to fetch
    assert not re.search(r"<link[^>]+href=\"http", page)
    for chart in CHARTS:
        assert f'id="{chart}"' in page
    assert "dataset.chartsExpected = 6" in page


def test_html_has_the_tables_managers_read(outputs):
    page = outputs[0].read_text(encoding="utf-8")
    for heading in (
        "Summary",
        "Outcomes",
        "By tag",
        "By hour of day",
        "Script",
        "Nodes",
        "Nodes never reached",
        "Objections",
        "Answers no intent matched",
        "Calls",
    ):
        assert f">{heading}</h" in page
    assert "is this about the invoice" in page
    assert "Every node was reached." in page
    assert "handoff failed: operator did not answer" in page  # a call's transcript
    assert "recordings/c1-a1.wav</a>" in page
    assert "Hi Anna, this is Alex from Cloudline" in page


def test_html_escapes_what_people_said(db, tmp_path):
    # Everything in the page comes from calls: a phrase must never become markup.
    from voicebot.peers.sample_campaign import PERSONAS, Persona, say

    personas = {**PERSONAS, "hacker": Persona("hacker", (say("<script>alert(1)</script>"), say("yes")))}
    plan = (("Eve", "<b>Evil</b>", ("x",), ("hacker",)),)
    store = build_sample_campaign(tmp_path / "c.db", load_dialplan(DIALPLAN).graph, str(DIALPLAN), plan=plan, personas=personas)
    assert main(["report", str(store), "--html", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_csv_tables(outputs):
    out = outputs[1]
    assert sorted(p.stem for p in out.glob("*.csv")) == sorted(FILES)
    summary = {r["metric"]: r["value"] for r in _rows(out / "summary.csv")}
    assert (summary["contacts"], summary["attempts"], summary["conversations"], summary["goals"]) == ("23", "27", "20", "5")
    assert float(summary["conversion_rate"]) == 0.25
    nodes = {r["node"]: r for r in _rows(out / "nodes.csv")}
    assert (nodes["greeting"]["reached"], nodes["greeting"]["no_match"], nodes["greeting"]["no_input"]) == ("20", "6", "4")
    assert nodes["confirm_callback"]["no_match_rate"] == ""  # a node that does not listen has no rate
    unmatched = _rows(out / "unmatched_phrases.csv")
    assert (unmatched[0]["node"], unmatched[0]["text"], unmatched[0]["count"]) == ("greeting", "is this about the invoice", "3")
    calls = _rows(out / "calls.csv")
    assert len(calls) == 27
    first = calls[0]
    assert first["attempt_id"] == "c1-a1" and first["started_at"] == "2025-03-03T09:00:00+00:00"
    assert first["path"].startswith("greeting > discovery") and "0.0s bot: Hi Anna" in first["transcript"]
    assert {r["key"] for r in _rows(out / "by_tag.csv")} == {"cold", "inbound", "vip"}
    assert [r["step"] for r in _rows(out / "funnel.csv")][:3] == ["dialled", "answered", "conversation"]
    assert _rows(out / "outcomes.csv")[0] == {"outcome": "meeting_booked", "calls": "5"}
    assert _rows(out / "objections.csv")[0]["node"] == "objection_not_interested"


def test_an_empty_campaign_still_renders(tmp_path, capsys):
    db = tmp_path / "empty.db"
    with CampaignStore.open(db, "demo-en-cloud-savings", str(DIALPLAN)):
        pass
    assert main(["report", str(db), "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "csv")]) == 0
    assert "no calls yet" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No calls yet: 0 contact(s) imported, none dialled." in page
    assert 'id="chart-graph-reach"' in page  # the script is still there to look at
    assert len(_rows(tmp_path / "csv" / "calls.csv")) == 0


def test_bad_input_gets_a_clear_error(db, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.db")]) == 1
    assert "no such campaign store" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 200)
    assert main(["report", str(junk)]) == 1
    assert "is not a voicebot campaign store" in capsys.readouterr().err
    assert main(["report", str(db), "--dialplan", str(DIALPLAN.parent / "cold_call_ru.yaml")]) == 1
    assert "is the dialplan of campaign 'cold-call-ru-cloud-savings'" in capsys.readouterr().err
    assert main(["report", str(db), "--timezone", "Nowhere/Atlantis"]) == 1
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["report", str(db), "--main-path", "greeting,pitchh"]) == 1
    assert "--main-path: " in (err := capsys.readouterr().err) and "has no node(s) pitchh" in err


def test_options_change_goals_and_hours(db, tmp_path, capsys):
    assert (
        main(["report", str(db), "--goal", "meeting_booked", "--goal", "send_info", "--timezone", "Europe/Berlin", "--csv", str(tmp_path)])
        == 0
    )
    summary = {r["metric"]: r["value"] for r in _rows(tmp_path / "summary.csv")}
    assert summary["goals"] == "6" and summary["goal_outcomes"] == "meeting_booked send_info"
    assert _rows(tmp_path / "by_hour.csv")[0]["key"] == "10:00"  # 09:00 UTC is 10:00 in Berlin in March
