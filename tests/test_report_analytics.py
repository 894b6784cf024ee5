"""Report analytics over a sample campaign: the real script engine's calls in a real store."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from voicebot.campaign.store import CampaignStore
from voicebot.dialplan import load_dialplan
from voicebot.peers.sample_campaign import CONTACTS, build_sample_campaign
from voicebot.report.analytics import by_hour, by_tag, outcome_counts, summarize
from voicebot.report.build import build_report, check_matches, find_dialplan
from voicebot.report.calls import call_view, recording_href
from voicebot.report.script_graph import ScriptShape
from voicebot.report.script_stats import END, script_analytics
from voicebot.report.source import ReportError, load_campaign

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplans" / "demo_en.yaml"
GOALS = ("meeting_booked",)
MAIN_PATH = ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"]


@pytest.fixture(scope="module")
def loaded():
    return load_dialplan(DIALPLAN)


@pytest.fixture(scope="module")
def data(loaded, tmp_path_factory):
    db = build_sample_campaign(tmp_path_factory.mktemp("report") / "campaign.db", loaded.graph, str(DIALPLAN))
    return load_campaign(db)


@pytest.fixture(scope="module")
def script(data, loaded):
    return script_analytics(data, ScriptShape.of(loaded.graph), GOALS)


def _call(data, attempt_id: str):
    return next(c for c in data.calls if c.attempt_id == attempt_id)


# --- the campaign ------------------------------------------------------------------------------


def test_summary_counts_every_attempt_and_conversion(data):
    s = summarize(data, GOALS)
    assert (s.contacts, s.contacts_pending, s.contacts_dnc) == (23, 1, 1)  # Zoe never called; Omar asked not to be called
    assert (s.attempts, s.ended, s.answered, s.voicemail, s.conversations) == (27, 27, 21, 1, 20)
    assert s.connect_rate == pytest.approx(21 / 27)
    assert (s.goals, s.contacts_converted) == (5, 5)
    assert s.conversion_rate == pytest.approx(5 / 20)
    assert (s.handoffs, s.handoffs_completed) == (2, 1)  # a transfer that connected, one the operator missed
    # first attempts every 13 minutes from 09:00 plus retries 2 h later: 27 attempts in 7 clock hours
    assert s.calls_per_hour == pytest.approx(27 / 7)
    answered = [c for c in data.calls if c.answered]
    assert s.avg_talk_s == pytest.approx(sum(c.talk_ms for c in answered) / len(answered) / 1000)
    assert s.avg_talk_s > 10


def test_outcomes_are_counted_most_frequent_first(data):
    counts = dict(outcome_counts(data))
    assert counts == {
        "meeting_booked": 5,
        "not_interested": 5,
        "busy": 3,
        "callback": 2,
        "customer_hangup": 2,
        "no_answer": 2,
        "unclear": 2,
        "dnc": 1,
        "handoff": 1,
        "invalid_number": 1,
        "send_info": 1,
        "voicemail": 1,
        "wrong_number": 1,
    }
    assert outcome_counts(data)[0] == ("meeting_booked", 5)


def test_by_tag_counts_a_contact_under_each_of_its_tags(data):
    tags = {r.key: r for r in by_tag(data, GOALS)}
    assert set(tags) == {"inbound", "cold", "vip"}
    inbound = tags["inbound"]
    assert (inbound.contacts, inbound.attempts, inbound.answered, inbound.goals, inbound.handoffs) == (6, 7, 6, 3, 1)
    vip = tags["vip"]
    assert (vip.contacts, vip.attempts, vip.answered, vip.goals) == (4, 6, 4, 2)
    assert vip.connect_rate == pytest.approx(4 / 6)
    expected_contacts = sum("cold" in tags_ and bool(personas) for _, _, tags_, personas in CONTACTS)
    assert tags["cold"].contacts == expected_contacts


def test_by_hour_follows_the_time_zone(data):
    utc = by_hour(data, ZoneInfo("UTC"), GOALS)
    assert [h.key for h in utc] == ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    assert sum(h.attempts for h in utc) == 27
    assert utc[0].attempts == 5  # 09:00, 09:13, 09:26, 09:39, 09:52
    new_york = by_hour(data, ZoneInfo("America/New_York"), GOALS)  # EST in March 2025 before the 9th: UTC-5
    assert new_york[0].key == "04:00"
    assert [h.attempts for h in new_york] == [h.attempts for h in utc]


# --- the script ----------------------------------------------------------------------------------


def test_node_reach_results_and_no_match_rates(script):
    assert script.conversations == script.with_decisions == 20
    greeting = script.node("greeting")
    assert (greeting.reached, greeting.visits) == (20, 20)
    # 5 answers no intent matched plus a "yes" heard with confidence 0.2; 4 silences
    assert (greeting.answers, greeting.no_match, greeting.no_input) == (28, 6, 4)
    assert greeting.no_match_rate == pytest.approx(6 / 28)
    assert greeting.results["yes"] == 9 and greeting.results["low_confidence"] == 1
    assert greeting.results["price"] == 1 and greeting.results["dnc"] == 1  # global intents by name
    assert greeting.exits["discovery"] == 9 and greeting.exits[END] == 1  # the person who hung up
    pitch = script.node("pitch")
    assert (pitch.reached, pitch.answers, pitch.no_match) == (9, 12, 3)
    assert script.node("discovery").results == {"capture": 8, "no_time": 1}
    assert script.node("handoff_request").results == {"transfer_failed": 1}
    assert script.node("handoff_request").answers == 0  # a failed transfer is not something the person said
    assert script.node("goodbye_meeting").kind == "hangup"


def test_nodes_never_reached_need_calls_that_avoid_them(loaded, tmp_path):
    plan = (("Anna", "Northwind", ("x",), ("meeting",)), ("Bob", "Contoso", ("x",), ("busy",)))
    small = load_campaign(build_sample_campaign(tmp_path / "small.db", loaded.graph, plan=plan))
    st = script_analytics(small, ScriptShape.of(loaded.graph), GOALS)
    assert st.conversations == 1
    assert set(st.never_reached) == set(loaded.graph.nodes) - set(MAIN_PATH)
    assert "objection_already_have" in st.never_reached and "greeting" not in st.never_reached


def test_every_node_of_the_sample_is_reached(script, loaded):
    assert script.never_reached == []
    assert [n.node for n in script.nodes] == list(loaded.graph.nodes)


def test_funnel_follows_the_main_path_around_objections(script):
    assert script.main_path == MAIN_PATH
    funnel = {(s.label, s.node): s.count for s in script.funnel}
    assert [s.label for s in script.funnel] == ["dialled", "answered", "conversation", *MAIN_PATH]
    assert funnel[("dialled", None)] == 27 and funnel[("conversation", None)] == 20
    # the one who went discovery -> objection_no_time -> pitch still counts at pitch
    assert [funnel[(n, n)] for n in MAIN_PATH] == [20, 9, 9, 6, 5, 5]


def test_main_path_can_be_given(data, loaded):
    st = script_analytics(data, ScriptShape.of(loaded.graph), GOALS, main_path=["greeting", "objection_send_offer", "goodbye_send_offer"])
    assert [s.count for s in st.funnel[3:]] == [20, 1, 1]


def test_objections_what_led_there_and_what_followed(script):
    by_node = {o.node: o for o in script.objections}
    assert set(by_node) == {"objection_not_interested", "objection_already_have", "objection_no_time", "objection_send_offer"}
    assert script.objections[0].node == "objection_not_interested"  # the most common first
    ni = by_node["objection_not_interested"]
    assert ni.reached == 5
    assert ni.came_from == {"pitch: no": 2, "pitch: not_interested": 2, "greeting: not_interested": 1}
    assert ni.answers["not_priority"] == 2
    assert ni.next_nodes == {"goodbye_not_interested": 4, "objection_already_have": 1}
    assert ni.outcomes == {"not_interested": 4, "meeting_booked": 1} and ni.goals == 1


def test_unmatched_phrases_are_grouped_with_the_calls_to_listen_to(script):
    top = script.unmatched[0]
    assert (top.node, top.text, top.count, top.result) == ("greeting", "is this about the invoice", 3, "no_match")
    assert len(top.calls) == 2  # said twice in one call, once in another
    found = {(u.node, u.text): u for u in script.unmatched}
    assert found[("pitch", "what about security")].count == 2
    assert found[("greeting", "yes")].result == "low_confidence"
    assert ("greeting", "[DTMF 5]") in found
    assert ("propose_meeting", "neither works for me") in found
    assert not any(u.text == "we track it in a spreadsheet" for u in script.unmatched)  # a capture is no miss


def test_without_the_dialplan_the_script_comes_from_the_calls(data):
    st = script_analytics(data, None, GOALS)
    assert st.never_reached == []  # unknowable without the graph
    assert st.main_path == MAIN_PATH  # the most common path of the calls that reached a goal
    assert st.node("greeting").kind == "unknown"


# --- one call ----------------------------------------------------------------------------------------


def test_call_view_transcript_in_time_order_with_what_the_engine_made_of_it(data):
    call = next(
        c for c in data.calls if c.path[:1] == ("greeting",) and "is this about the invoice" in str(c.transcript) and "discovery" in c.path
    )
    view = call_view(call)
    times = [line.at_ms for line in view.lines]
    assert times == sorted(times) and times[0] == 0
    assert view.lines[0].speaker == "bot" and view.lines[0].text.startswith("Hi Raj")
    said = [(line.text, line.note) for line in view.lines if line.speaker == "customer"]
    assert said[0] == ("is this about the invoice", "no match, confidence 0.92")
    assert said[1] == ("(silence)", "no input")
    assert said[2][0] == "yes" and said[2][1].startswith("intent yes")
    assert said[3][1].startswith("capture")
    assert view.recording == f"recordings/{call.attempt_id}.wav"
    assert recording_href(view.recording, data.db) == (data.db.parent / "recordings" / f"{call.attempt_id}.wav").resolve().as_uri()


def test_call_view_shows_handoffs_keys_and_unanswered_calls(data):
    handoff = next(c for c in data.calls if c.handoff == "failed")
    texts = [line.text for line in call_view(handoff).lines]
    assert "handoff to sales (transfer)" in texts
    assert "handoff failed: operator did not answer" in texts
    assert texts[-1].startswith("I'm sorry, all my colleagues are busy")
    keys = next(c for c in data.calls if "[DTMF 5]" in str(c.transcript))
    assert any(line.text == "[DTMF 5]" and line.note == "no match" for line in call_view(keys).lines)
    busy = call_view(next(c for c in data.calls if c.outcome == "busy"))
    assert (busy.lines, busy.sip_code, busy.path) == ((), 486, ())


# --- loading and checking ---------------------------------------------------------------------------


def test_loading_never_writes_the_store(data, tmp_path):
    copy = tmp_path / "copy.db"
    shutil.copy(data.db, copy)
    before = copy.read_bytes()
    load_campaign(copy)
    assert copy.read_bytes() == before
    with pytest.raises(ReportError, match="no such campaign store"):
        load_campaign(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_not_a_store_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all\n" * 100)
    with pytest.raises(ReportError, match="not a voicebot campaign store"):
        load_campaign(junk)
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(ReportError, match="no table attempts"):
        load_campaign(other)


def test_a_dialplan_that_does_not_match_is_refused(data, loaded):
    other = load_dialplan(DIALPLAN.parent / "cold_call_ru.yaml")
    with pytest.raises(ReportError, match="is the dialplan of campaign"):
        check_matches(data, other)
    calls = list(data.calls)
    calls[0] = dataclasses.replace(calls[0], path=("greeting", "old_pitch"))
    with pytest.raises(ReportError, match="has no node.*old_pitch"):
        check_matches(dataclasses.replace(data, calls=tuple(calls)), loaded)


def test_the_recorded_dialplan_is_found_or_noted(data, tmp_path):
    found, notes = find_dialplan(data, None)
    assert found is not None and found.path == DIALPLAN and notes == []
    gone = dataclasses.replace(data, dialplan=str(tmp_path / "gone.yaml"))
    found, notes = find_dialplan(gone, None)
    assert found is None and "was not found" in notes[0]
    with pytest.raises(ReportError, match="no such dialplan"):
        find_dialplan(data, tmp_path / "nope.yaml")


def test_records_without_engine_decisions_are_noted(data, loaded):
    calls = tuple(
        dataclasses.replace(c, record={k: v for k, v in c.record.items() if k != "decisions"}) if c.record else c for c in data.calls
    )
    report = build_report(dataclasses.replace(data, calls=calls), loaded)
    assert any("without the script engine's decisions" in n for n in report.notes)
    assert report.script.node("greeting").reached == 20  # paths still count
    assert report.script.unmatched == []


def test_an_empty_campaign_has_a_summary_of_zeros(loaded, tmp_path):
    with CampaignStore.open(tmp_path / "empty.db", loaded.dialplan.campaign.name, str(DIALPLAN)):
        pass
    report = build_report(load_campaign(tmp_path / "empty.db"), loaded)
    s = report.summary
    assert (s.contacts, s.attempts, s.connect_rate, s.avg_talk_s, s.calls_per_hour) == (0, 0, None, None, None)
    assert report.script.conversations == 0 and len(report.script.never_reached) == len(loaded.graph.nodes)
