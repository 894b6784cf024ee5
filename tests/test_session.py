"""The call session with fakes: timing of turns, barge-in, backchannels, silence, voicemail."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.audio.frames import NARROWBAND
from voicebot.dialplan import load_dialplan
from voicebot.session import (
    AmdVerdict,
    CallSession,
    CustomerSaid,
    Interrupt,
    NoInput,
    PromptHeard,
    SessionSettings,
    TurnLatency,
)
from voicebot.testing import CustomerLine, FakeAsr, FakePrompts, FakeVoice, Timeline

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def graph():
    return load_dialplan(ROOT / "dialplans" / "demo_en.yaml").graph


def run(graph, lines, *, detect_voicemail=False, **overrides):
    settings = SessionSettings.from_dialplan(graph)
    settings.detect_voicemail = detect_voicemail
    for k, v in overrides.items():
        setattr(settings, k, v)
    asr = FakeAsr([line.text for line in lines])
    session = CallSession(graph, asr, FakePrompts(), {"first_name": "Anna"}, settings, detector=FakeVoice())
    timeline = Timeline(NARROWBAND, lines)
    end = timeline.run(session)
    return session, timeline, end


def events(session, kind):
    return [e for e in session.log if isinstance(e, kind)]


def test_greeting_starts_on_the_first_frame(graph):
    session, timeline, _ = run(graph, [CustomerLine("take me off your list", ms=1200)])
    assert timeline.outbound[0] != NARROWBAND.silence()


def test_full_conversation_follows_the_script(graph):
    lines = [CustomerLine(t, ms=1000) for t in ("yes sure", "we use a spreadsheet", "yes", "tuesday", "yes")]
    session, _, _ = run(graph, lines)
    assert session.result_outcome == "meeting_booked"
    assert session.engine.path == ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"]
    assert session.ended


def test_turn_latency_and_early_end_of_turn_on_a_complete_answer(graph):
    lines = [CustomerLine("yes sure", ms=600), CustomerLine("we use a spreadsheet", ms=1200)]
    session, _, _ = run(graph, lines)
    said = events(session, CustomerSaid)
    latencies = events(session, TurnLatency)
    # "yes sure" matches an intent completely: the turn ends after the short silence
    assert said[0].end_reason == "complete"
    assert said[0].decision_ms - said[0].last_voice_ms == 240
    # an open answer waits for the default silence
    assert said[1].end_reason == "silence"
    assert said[1].decision_ms - said[1].last_voice_ms == 600
    for lat in latencies:
        assert 0 <= lat.turn_ms <= 20  # the reply's first frame goes out on the next tick
    assert latencies[0].voice_to_voice_ms <= 260


def test_barge_in_with_real_words_stops_the_prompt(graph):
    # speaks 1 s into the greeting: real words end it
    lines = [CustomerLine("sorry I am busy right now call me later", ms=2000, delay_ms=1000, cue="prompt")]
    session, _, _ = run(graph, lines)
    kinds = [(e.kind, e.prompt_id) for e in events(session, Interrupt)]
    assert kinds[:2] == [("pause", "greeting"), ("stop", "greeting")]
    pause = events(session, Interrupt)[0]
    assert pause.ts_ms - pause.onset_ms <= 150  # the bot goes quiet within the target
    heard = [e for e in events(session, PromptHeard) if e.prompt_id == "greeting"][0]
    assert heard.interrupted and 900 <= heard.played_ms <= 1300
    assert session.engine.path[:2] == ["greeting", "ask_callback"]


def test_backchannel_pauses_then_resumes_the_prompt(graph):
    lines = [CustomerLine("uh huh", ms=400, delay_ms=1500, cue="prompt"), CustomerLine("take me off your list", ms=1500)]
    session, _, _ = run(graph, lines)
    kinds = [e.kind for e in events(session, Interrupt)]
    assert kinds[:2] == ["pause", "resume"]
    greeting = [e for e in events(session, PromptHeard) if e.prompt_id == "greeting"][0]
    assert not greeting.interrupted and greeting.played_ms == greeting.total_ms
    assert session.result_outcome == "dnc"


def test_noise_without_words_resumes(graph):
    lines = [CustomerLine("", ms=300, delay_ms=800, cue="prompt"), CustomerLine("don't call me again", ms=1500)]
    session, _, _ = run(graph, lines)
    assert [e.kind for e in events(session, Interrupt)][:2] == ["pause", "resume"]
    assert session.result_outcome == "dnc"


def test_silence_reprompts_after_the_timeout(graph):
    session, _, _ = run(graph, [])
    no_input = events(session, NoInput)
    assert len(no_input) == 3
    assert session.result_outcome == "unclear"
    # the timer starts when the prompt has finished playing
    first_prompt_end = [e for e in events(session, PromptHeard) if e.prompt_id == "greeting"][0].ts_ms
    assert no_input[0].ts_ms - first_prompt_end == pytest.approx(6000, abs=40)


def test_barge_in_not_allowed_keeps_playing(graph, tmp_path):
    lines = [CustomerLine("stop talking please", ms=800, delay_ms=500, cue="prompt"), CustomerLine("wrong number", ms=900)]
    session, _, _ = run(graph, lines)
    assert events(session, Interrupt)  # allowed by default
    # now forbid barge-in on every prompt, as a dialplan does
    text = (ROOT / "dialplans" / "demo_en.yaml").read_text().replace("    barge_in: true\n", "    barge_in: false\n", 1)
    assert "barge_in: false" in text
    path = tmp_path / "no_barge_in.yaml"
    path.write_text(text)
    session2, _, _ = run(load_dialplan(path).graph, lines)
    assert not events(session2, Interrupt)
    greeting = [e for e in events(session2, PromptHeard) if e.prompt_id == "greeting"][0]
    assert not greeting.interrupted


def test_answering_machine_gives_voicemail(graph):
    lines = [CustomerLine("hi you have reached anna please leave a message after the tone", ms=4000, delay_ms=200, cue="prompt")]
    session, _, _ = run(graph, lines, detect_voicemail=True)
    verdicts = events(session, AmdVerdict)
    assert verdicts and verdicts[0].kind == "machine"
    assert session.result_outcome == "voicemail" and session.ended


def test_short_hello_is_a_person(graph):
    lines = [CustomerLine("hello", ms=500, delay_ms=100, cue="prompt"), CustomerLine("wrong number", ms=900)]
    session, _, _ = run(graph, lines, detect_voicemail=True)
    assert events(session, AmdVerdict)[0].kind == "human"
    assert session.result_outcome == "wrong_number"


def test_listen_restricts_asr_to_the_node_vocabulary_plus_backchannels(graph):
    session, _, _ = run(graph, [CustomerLine("wrong number", ms=900)])
    vocab = session.asr.vocabularies[0]
    assert "i have a minute" in vocab and "uh" in vocab and "talk to a person" in vocab


def test_dtmf_and_remote_hangup(graph):
    settings = SessionSettings.from_dialplan(graph)
    settings.detect_voicemail = False
    session = CallSession(graph, FakeAsr([]), FakePrompts(), {}, settings, detector=FakeVoice())
    session.start(0)
    session.dtmf("5", 100)  # no DTMF routes in the greeting: a no-match reprompt
    assert session.engine.turns[-1].result == "no_match"
    session.remote_hangup(200)
    assert session.ended and session.result_outcome == "customer_hangup"
    heard = events(session, PromptHeard)
    assert heard and all(e.interrupted for e in heard)


def test_goodbye_plays_out_before_the_call_ends(graph):
    session, timeline, end = run(graph, [CustomerLine("you have the wrong number", ms=1200)])
    goodbye = [e for e in events(session, PromptHeard) if e.prompt_id == "wrong_number_goodbye"][0]
    assert not goodbye.interrupted and goodbye.played_ms == goodbye.total_ms
    assert end >= goodbye.ts_ms


def _beep(ms: int, freq: int = 1000) -> list[bytes]:
    import numpy as np

    n = NARROWBAND.samples_per_frame
    t = np.arange(8000 * ms // 1000) / 8000
    tone = (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
    return [tone[i : i + 2 * n] for i in range(0, len(tone), 2 * n)]


def test_voicemail_message_goes_out_after_the_beep(tmp_path):
    from voicebot.simulate import CallSimulator, CustomerAudio
    from voicebot.testing import speech_frames

    text = (ROOT / "dialplans" / "demo_en.yaml").read_text()
    text = text.replace(
        "operators:", 'voicemail:\n  message: "Hi {first_name|there}, this is Alex from Cloudline. We will call you back."\noperators:', 1
    )
    path = ROOT / "dialplans" / "demo_en.yaml"
    dp = tmp_path / "vm.yaml"
    dp.write_text(text)
    g = load_dialplan(dp).graph
    settings = SessionSettings.from_dialplan(g)
    prompts = FakePrompts()
    session = CallSession(g, FakeAsr(["hi you reached anna"]), prompts, {"first_name": "Anna"}, settings, detector=FakeVoice())
    machine = speech_frames(NARROWBAND, 0, 3000) + [NARROWBAND.silence()] * 10 + _beep(400)
    sim = CallSimulator(NARROWBAND, [CustomerAudio(machine, 100, "answer")])
    sim.run(session, 60_000)
    assert session.result_outcome == "voicemail"
    assert prompts.requests[-1] == "Hi Anna, this is Alex from Cloudline. We will call you back."
    message = [e for e in events(session, PromptHeard) if e.prompt_id == "voicemail"][0]
    beep_end_ms = 100 + (150 + 10 + 20) * 20
    assert not message.interrupted
    assert message.ts_ms - message.played_ms >= beep_end_ms  # it started after the beep
    assert path.read_text() != text  # the demo itself keeps no voicemail message


def _bridge_graph(tmp_path):
    text = (ROOT / "dialplans" / "demo_en.yaml").read_text().replace("    mode: transfer\n", "    mode: bridge\n    warm: true\n", 1)
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return load_dialplan(path).graph


@pytest.mark.parametrize("ok", [True, False])
def test_a_handoff_carries_the_context_holds_the_customer_and_falls_back_on_failure(ok, tmp_path):
    from voicebot.session import HandoffEnded, HandoffStarted

    graph = _bridge_graph(tmp_path)
    prompts = FakePrompts()
    session = CallSession(
        graph, FakeAsr(["how much does it cost"]), prompts, {"first_name": "Anna", "company": "Acme"}, detector=FakeVoice()
    )
    timeline = Timeline(NARROWBAND, [CustomerLine("how much does it cost", ms=1000)])
    timeline.transfer_ok, timeline.operator_delay_ms = ok, 12_000
    timeline.run(session)

    (started,) = events(session, HandoffStarted)
    (result,) = events(session, HandoffEnded)
    assert (started.operator, started.mode, started.node) == ("sales", "bridge", "handoff_buying")
    assert result.ok is ok and abs(result.ts_ms - started.ts_ms - 12_000) <= 20  # one tick
    briefing = "Incoming call from Anna at Acme. They said: how much does it cost. Press 1 to take the call."
    hold = "Please stay on the line, I am connecting you."
    assert briefing in prompts.requests and hold in prompts.requests
    # the hold prompt (60 ms a character) repeats after a 4 s pause while the operator is not there yet
    hold_ms = 60 * len(hold)
    plays = [e for e in events(session, PromptHeard) if e.prompt_id == "handoff#hold"]
    assert len(plays) == 0  # hold prompts are not script prompts: the engine never hears of them
    held = timeline.outbound[started.ts_ms // 20 : result.ts_ms // 20]
    sounding = [i for i, f in enumerate(held) if f != NARROWBAND.silence()]
    assert sounding[0] == 0 and len(sounding) >= 2 * hold_ms // 20  # played at once, then again
    assert not events(session, NoInput)  # nobody waits for an answer on hold
    report = session.report(0)
    assert report.handoff["contact"]["first_name"] == "Anna" and report.handoff["briefing"] == briefing
    assert report.handoff["transcript"][1] == {"speaker": "customer", "text": "how much does it cost"}
    # the engine's decision on what was heard is in the record, for script analytics
    assert report.decisions[0]["node"] == "greeting" and report.decisions[0]["text"] == "how much does it cost"
    assert report.decisions[0]["result"] in ("intent", "global") and report.decisions[0]["intent"]
    if ok:
        assert session.result_outcome == "handoff" and session.engine.path == ["greeting", "handoff_buying"]
    else:
        assert session.engine.path == ["greeting", "handoff_buying", "operator_unavailable"]
        assert session.result_outcome == "callback" and report.handoff["ok"] is False


def test_keys_go_out_after_the_prompt_before_them_not_after_the_next_one():
    graph = load_dialplan(ROOT / "tests" / "data" / "ivr.yaml").graph
    session = CallSession(graph, FakeAsr([]), FakePrompts(), {}, detector=FakeVoice())
    session.start(0)
    released_at, ts = None, 0
    while not session.ended and ts < 10_000:
        session.next_outbound(ts)
        session.on_inbound(NARROWBAND.silence(), ts)
        if released_at is None and session.keys_due:
            released_at = ts
            assert session.take_keys() == "1,,2#" and session.take_keys() == ""
        ts += 20
    menu_ms = 60 * len("Sales, please.")  # FakePrompts: 60 ms a character
    bye_ms = 60 * len("Thank you, goodbye.")
    assert released_at is not None and menu_ms - 20 <= released_at <= menu_ms + 60  # with its last frame
    assert session.ended and ts >= menu_ms + bye_ms  # the goodbye still played in full


def test_script_progress_is_handed_out_as_it_happens_once(graph):
    """What the worker publishes live: nodes and decisions since the last take, each exactly once."""
    lines = [CustomerLine(t, ms=1000) for t in ("yes sure", "we use a spreadsheet", "yes", "tuesday", "yes")]
    asr = FakeAsr([line.text for line in lines])
    session = CallSession(graph, asr, FakePrompts(), {"first_name": "Anna"}, SessionSettings.from_dialplan(graph), detector=FakeVoice())
    taken: list[tuple[int, list[str], list[dict]]] = []
    on_inbound = session.on_inbound

    def inbound_then_take(frame, ts):  # as the worker's session thread does after every session call
        on_inbound(frame, ts)
        if session.progress_due:
            taken.append((ts, *session.take_progress()))

    session.on_inbound = inbound_then_take
    Timeline(NARROWBAND, lines).run(session)
    nodes = [n for _, chunk, _ in taken for n in chunk]
    turns = [t for _, _, chunk in taken for t in chunk]
    assert nodes == session.engine.path
    assert [t["text"] for t in turns] == ["yes sure", "we use a spreadsheet", "yes", "tuesday", "yes"]
    assert turns[0]["node"] == "greeting" and turns[0]["result"] in ("intent", "global")
    assert len(taken) >= 5 and taken[0][0] < taken[-1][0] - 5000  # one take per answer, during the call
    assert not session.progress_due and session.take_progress() == ([], [])
