"""The script engine: events in, actions out, path and outcome recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.dialplan import load_dialplan
from voicebot.errors import ScriptError
from voicebot.script.engine import (
    BargeIn,
    CallerHangup,
    Dtmf,
    Hangup,
    Heard,
    Listen,
    PromptDone,
    Say,
    ScriptEngine,
    Silence,
    Transfer,
    TransferResult,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def graph():
    return load_dialplan(DATA / "minimal.yaml").graph


def kinds(actions):
    return [type(a).__name__ for a in actions]


def says(actions):
    return [a.text for a in actions if isinstance(a, Say)]


def test_start_says_greeting_then_listens_with_vocabulary(graph):
    e = ScriptEngine(graph, {"first_name": "Anna"})
    actions = e.start()
    assert kinds(actions) == ["Say", "Listen"]
    assert actions[0].text == "Hello Anna, this is Sam. Is now a good time?"
    assert actions[0].prompt_id == "hello" and actions[0].barge_in is True
    listen = actions[1]
    assert listen.node == "hello" and listen.dtmf is True
    assert {"yes", "sure", "no", "talk to a person", "who is this"} <= set(listen.vocabulary)
    assert e.path == ["hello"]


def test_template_default_when_contact_field_missing(graph):
    e = ScriptEngine(graph, {})
    assert says(e.start())[0].startswith("Hello there,")


def test_start_twice_is_an_error(graph):
    e = ScriptEngine(graph)
    e.start()
    with pytest.raises(ScriptError):
        e.start()


def test_intent_moves_to_next_node(graph):
    e = ScriptEngine(graph)
    e.start()
    actions = e.handle(Heard("yes sure"))
    assert says(actions) == ["When shall we meet?"]
    assert isinstance(actions[-1], Listen) and actions[-1].node == "ask_time"
    assert e.turns[-1].intent == "yes" and e.turns[-1].result == "intent"


def test_route_say_then_hangup_with_outcome(graph):
    e = ScriptEngine(graph)
    e.start()
    actions = e.handle(Heard("nope"))
    assert kinds(actions) == ["Say", "Hangup"]
    assert actions[-1] == Hangup("not_interested")
    assert e.finished and e.outcome == "not_interested"
    assert e.handle(Heard("yes")) == []  # nothing happens after the end


def test_capture_slot_and_render_it(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("yes"))
    actions = e.handle(Heard("tomorrow at three"))
    assert says(actions) == ["See you tomorrow 15:00."]
    assert actions[-1] == Hangup("booked")
    r = e.result()
    assert r.slots == {"when": "tomorrow 15:00"}
    assert r.path == ["hello", "ask_time", "confirm"]
    assert r.outcome == "booked"


def test_no_match_reprompts_then_goes_to_fallback(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("yes"))
    first = e.handle(Heard("purple monkey dishwasher"))
    assert says(first) == ["Which day and time?"]  # the node's own no-match reprompt
    second = e.handle(Heard("purple monkey dishwasher"))
    assert says(second) == ["Sorry, goodbye."] and second[-1] == Hangup("unclear")
    assert [t.result for t in e.turns] == ["intent", "no_match", "no_match"]


def test_default_no_match_reprompt_repeats_the_question(graph):
    e = ScriptEngine(graph)
    e.start()
    actions = e.handle(Heard("banana"))
    assert says(actions) == ["Sorry, I didn't catch that.", "Is now a good time?"]


def test_silence_reprompts_up_to_max_then_fallback(graph):
    e = ScriptEngine(graph)
    e.start()
    for _ in range(2):  # default max_no_input is 2
        actions = e.handle(Silence())
        assert says(actions)[0] == "Are you still there?"
        assert isinstance(actions[-1], Listen)
    actions = e.handle(Silence())
    assert actions[-1] == Hangup("unclear")
    assert e.path == ["hello", "bye_unclear"]


def test_empty_text_counts_as_silence(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("   "))
    assert e.turns[-1].result == "no_input"


def test_low_confidence_is_a_no_match(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("yes", confidence=0.05))
    assert e.turns[-1].result == "low_confidence"
    assert e.path == ["hello"]


def test_dtmf_route(graph):
    e = ScriptEngine(graph)
    e.start()
    actions = e.handle(Dtmf("0"))
    assert isinstance(actions[-1], Transfer) and actions[-1].uri == "sip:600@127.0.0.1:5090"


def test_unknown_dtmf_is_a_no_match(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Dtmf("7"))
    assert e.turns[-1].result == "no_match"


def test_global_intent_applies_in_any_node(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("yes"))
    actions = e.handle(Heard("can I talk to a person"))
    assert kinds(actions) == ["Say", "Transfer"]
    assert e.turns[-1].result == "global"
    assert not e.finished  # waits for the transfer's result
    assert e.handle(Heard("hello?")) == []  # words during a handoff change nothing
    assert e.handle(TransferResult(True)) == []
    assert e.outcome == "handoff" and e.result().operator == "desk"


def test_failed_transfer_goes_to_its_fallback(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("operator"))
    actions = e.handle(TransferResult(False, "486 Busy Here"))
    assert actions[-1] == Hangup("unclear")
    assert e.path[-2:] == ["handoff", "bye_unclear"]


def test_resume_answers_then_asks_again(graph):
    e = ScriptEngine(graph)
    e.start()
    actions = e.handle(Heard("who is this"))
    assert says(actions) == ["I am Sam.", "Is now a good time?"]
    assert isinstance(actions[-1], Listen) and actions[-1].node == "hello"
    assert e.path == ["hello"]


def test_caller_hangup_records_where(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(Heard("yes"))
    assert e.handle(CallerHangup()) == []
    r = e.result()
    assert r.outcome == "customer_hangup" and r.path[-1] == "ask_time"


def test_prompt_playback_is_recorded(graph):
    e = ScriptEngine(graph)
    e.start()
    e.handle(BargeIn("hello", at_ms=1200))
    e.handle(PromptDone("hello", played_ms=1200, interrupted=True))
    assert [(p.prompt_id, p.interrupted) for p in e.result().prompts] == [("hello", True), ("hello", True)]


def test_transcript_has_both_sides(graph):
    e = ScriptEngine(graph, {"first_name": "Bo"})
    e.start()
    e.handle(Heard("yes"))
    assert e.result().transcript == [
        ("bot", "Hello Bo, this is Sam. Is now a good time?"),
        ("customer", "yes"),
        ("bot", "When shall we meet?"),
    ]


def test_missing_required_contact_value_is_a_script_error(tmp_path):
    text = (
        (DATA / "minimal.yaml")
        .read_text()
        .replace("first_name: {required: false, default: there}", "first_name: {required: true}")
        .replace("{first_name|there}", "{first_name}")
    )
    path = tmp_path / "d.yaml"
    path.write_text(text)
    e = ScriptEngine(load_dialplan(path).graph, {})
    with pytest.raises(ScriptError) as info:
        e.start()
    assert info.value.code == "template-missing-value" and "first_name" in str(info.value)


def test_next_loop_is_detected(tmp_path):
    text = (DATA / "minimal.yaml").read_text().replace(
        '      say: "See you {when}."\n      hangup: booked', '      say: "See you {when}."\n      next: confirm2'
    ) + "    confirm2:\n      next: confirm\n"
    path = tmp_path / "d.yaml"
    path.write_text(text)
    # the graph check already calls this out; the engine must not spin forever either
    from voicebot.dialplan import check_dialplan

    _, problems = check_dialplan(path)
    assert "no-way-out" in {p.code for p in problems}
