"""A misheard answer becomes a question or a reprompt, never an action; a machine's words never act.

Engine and session logic with fakes, then the real recogniser (Whisper tiny.en)
on spoken answers, and the typed paraphrase suites written without the phrase
lists (tests/data/understanding/*_test.yaml; *_dev.yaml and *_dev2.yaml are what the
matcher was tuned on).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voicebot.audio.frames import NARROWBAND
from voicebot.dialplan import load_dialplan
from voicebot.script.engine import Dtmf, Hangup, Heard, Listen, Say, ScriptEngine, Silence
from voicebot.session import CallSession, SessionSettings
from voicebot.simulate import CallSimulator, CustomerAudio
from voicebot.testing import FakeAsr, FakePrompts, FakeVoice, speech_frames

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "understanding"


@pytest.fixture(scope="module")
def graph():
    return load_dialplan(ROOT / "dialplans" / "demo_en.yaml").graph


@pytest.fixture(scope="module")
def graph_ru():
    return load_dialplan(ROOT / "dialplans" / "cold_call_ru.yaml").graph


def started(graph, at="greeting"):
    engine = ScriptEngine(graph, {"first_name": "Anna"})
    engine.start(at=at)
    return engine


def said(actions):
    return [a.text for a in actions if isinstance(a, Say)]


# --- confirmation of consequential intents --------------------------------------------------


def test_a_short_phrase_in_a_long_unsure_answer_is_confirmed_not_acted_on(graph):
    # Whisper's garble of an espeak-ng "Is there someone real I can talk to?": its "no" is not an answer
    garbled = "There's some one real I can talk to. There's no one real"
    engine = started(graph)
    actions = engine.handle(Heard(garbled, 0.55))
    assert engine.turns[-1].result == "confirm" and engine.turns[-1].intent == "no"
    assert engine.path == ["greeting"] and any("just to be sure" in t.lower() for t in said(actions))
    # the same words heard with confidence, or a short answer, are acted on
    engine = started(graph)
    engine.handle(Heard(garbled, 0.8))
    assert engine.turns[-1].result == "intent" and engine.path[-1] == "ask_callback"
    engine = started(graph)
    engine.handle(Heard("No, not really.", 0.55))
    assert engine.turns[-1].result == "intent"


def test_a_weakly_heard_dnc_asks_before_it_acts(graph):
    engine = started(graph)
    actions = engine.handle(Heard("stop calling me", confidence=0.55))
    assert engine.turns[-1].result == "confirm" and engine.turns[-1].intent == "dnc"
    assert any("stop calling you" in t for t in said(actions)), said(actions)
    assert not any(isinstance(a, Hangup) for a in actions) and isinstance(actions[-1], Listen)
    assert engine.outcome is None and engine.path == ["greeting"]
    actions = engine.handle(Heard("yes that's right", 0.8))
    assert engine.turns[-1].result == "confirmed" and engine.path[-1] == "dnc_goodbye"
    assert engine.outcome == "dnc"


def test_a_denied_confirmation_asks_the_question_again(graph):
    engine = started(graph)
    engine.handle(Heard("stop calling me", 0.55))
    actions = engine.handle(Heard("no no", 0.8))
    assert engine.turns[-1].result == "not_confirmed" and engine.outcome is None
    assert engine.path == ["greeting"] and isinstance(actions[-1], Listen)
    assert any("minute to talk" in t for t in said(actions))


def test_silence_or_a_key_is_never_taken_for_a_yes(graph):
    engine = started(graph)
    engine.handle(Heard("stop calling me", 0.55))
    engine.handle(Silence())
    assert engine.outcome is None and engine.turns[-1].result == "no_input"
    engine.handle(Heard("yes", 0.9))  # a yes to the node's own question now, not to the old confirmation
    assert engine.path[-1] == "discovery" and engine.outcome is None
    engine = started(graph)
    engine.handle(Heard("stop calling me", 0.55))
    engine.handle(Dtmf("1"))
    assert engine.outcome is None


def test_another_answer_to_the_confirmation_is_a_new_answer_to_the_node(graph):
    engine = started(graph)
    engine.handle(Heard("stop calling me", 0.55))
    engine.handle(Heard("how much does it cost", 0.9))
    assert engine.path[-1] == "handoff_buying" and engine.outcome is None


def test_a_clearly_heard_dnc_acts_at_once(graph):
    engine = started(graph)
    engine.handle(Heard("stop calling me", 0.95))
    assert engine.outcome == "dnc" and engine.turns[-1].result == "global"


def test_any_answer_that_would_end_the_call_is_confirmed_when_weak_even_without_its_own_confirm(graph):
    # objection_not_interested: "not a priority" hangs up (goodbye_not_interested); no confirm: in the dialplan
    node = graph.nodes["objection_not_interested"]
    assert "not_priority" in node.confirms and node.confirms["not_priority"].below == graph.dialplan.script.defaults.confirm_below
    assert "yes" not in graph.nodes["greeting"].confirms  # it leads on to a question, not to a goodbye
    engine = started(graph, "objection_not_interested")
    actions = engine.handle(Heard("not a priority", 0.4))
    assert engine.turns[-1].result == "confirm" and engine.outcome is None
    assert any('"not a priority"' in t for t in said(actions))  # the default question quotes what was heard


def test_russian_confirmation(graph_ru):
    engine = started(graph_ru)
    engine.handle(Heard("больше не звоните", 0.5))
    assert engine.turns[-1].result == "confirm" and engine.turns[-1].intent == "dnc"
    engine.handle(Heard("да", 0.9))
    assert engine.outcome == "dnc"


# --- no race with the answering-machine verdict ------------------------------------------------


def test_words_heard_before_the_machine_verdict_never_act(graph):
    # A machine: 1.5 s of talk, a 0.65 s pause (an end of turn: 0.6 s), more talk; the verdict
    # (2.4 s of talk: a machine) comes after the first "answer" has ended.
    settings = SessionSettings.from_dialplan(graph)
    assert settings.detect_voicemail
    asr = FakeAsr(["hi you reached anna i am not interested in sales calls", "leave a message after the tone"])
    session = CallSession(graph, asr, FakePrompts(), {"first_name": "Anna"}, settings, detector=FakeVoice())
    machine = speech_frames(NARROWBAND, 0, 1500) + [NARROWBAND.silence()] * 33 + speech_frames(NARROWBAND, 1, 1600)
    sim = CallSimulator(NARROWBAND, [CustomerAudio(machine, 0, "answer")])
    sim.run(session, max_ms=30_000)
    assert session.result_outcome == "voicemail"
    assert not session.engine.turns, session.engine.turns  # the script never took the machine's words
    assert "objection_not_interested" not in session.engine.path


def test_words_heard_before_a_human_verdict_are_acted_on_once_it_comes(graph):
    settings = SessionSettings.from_dialplan(graph)
    asr = FakeAsr(["how much does it cost"])
    session = CallSession(graph, asr, FakePrompts(), {"first_name": "Anna"}, settings, detector=FakeVoice())
    sim = CallSimulator(NARROWBAND, [CustomerAudio(speech_frames(NARROWBAND, 0, 1000), 0, "answer")])
    sim.run(session, max_ms=30_000)
    assert session.engine.turns[0].intent == "price" and "handoff_buying" in session.engine.path


# --- typed paraphrases written without the phrase lists ---------------------------------------------


def _route_target(graph, node, intent):
    if intent == "none":
        return "reprompt"
    route, _ = graph.nodes[node].route_for(intent)
    return route.next or route.hangup or "resume"


def typed_suite(graph, path: Path) -> tuple[float, list]:
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    misses = []
    for item in items:
        engine = ScriptEngine(graph, {"first_name": "Anna", "meeting_time": "Tuesday at ten"})
        engine.start(at=item["node"])
        engine.handle(Heard(item["text"], 1.0))
        turn = engine.turns[-1]
        if turn.result in ("intent", "global", "confirm"):
            got = _route_target(graph, item["node"], turn.intent)
        elif turn.result == "capture":
            got = graph.nodes[item["node"]].node.capture.next
        else:
            got = "reprompt"
        expected = _route_target(graph, item["node"], str(item["expect"]))
        if got != expected:
            misses.append((item["node"], item["text"], expected, got))
    return 1 - len(misses) / len(items), misses


@pytest.mark.parametrize("language", ["en", "ru"])
def test_typed_paraphrases_reach_their_outcome(language, graph, graph_ru):
    g = graph if language == "en" else graph_ru
    reach, misses = typed_suite(g, DATA / f"{language}_test.yaml")
    wrong = [m for m in misses if m[3] != "reprompt"]
    # Held-out suite, never tuned on. Measured: en 90.8 % (1 wrong action of 119), ru 87.4 % (5 of 119).
    # The goal is 95 %; these floors stop a regression, they are not the goal.
    assert reach >= (0.90 if language == "en" else 0.87), misses
    assert len(wrong) <= (2 if language == "en" else 6), wrong


NEGATIONS = {
    "en": [
        "not interested",
        "no, I'm not interested in a meeting",
        "I don't want to talk to anyone",
        "we don't need a call",
        "no thanks, I don't want to book anything",
        "I'm not interested in your prices",
    ],
    "ru": [
        "нет, не интересно",
        "не интересно",
        "не надо нам встречу",
        "не хочу ни с кем разговаривать",
        "нет, не нужен нам звонок",
        "нам это не нужно",
    ],
}


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("node", ["greeting", "pitch", "objection_send_offer", "propose_meeting", "confirm_meeting"])
def test_a_negation_never_books_a_meeting_nor_hands_off(language, node, graph, graph_ru):
    g = graph if language == "en" else graph_ru
    for text in NEGATIONS[language]:
        engine = ScriptEngine(g, {"first_name": "Anna", "meeting_time": "Tuesday at ten"})
        engine.start(at=node)
        actions = engine.handle(Heard(text, 1.0))
        if engine.turns[-1].result == "confirm":
            actions = engine.handle(Heard("да" if language == "ru" else "yes", 1.0))
        reached = set(engine.path[1:])
        assert not reached & {"propose_meeting", "confirm_meeting", "goodbye_meeting", "handoff_request", "handoff_buying"}, (
            text,
            engine.path,
        )
        assert engine.outcome not in ("meeting_booked", "handoff") and not any(a.__class__.__name__ == "Transfer" for a in actions)


# --- two-pass recognition: the grammar's hypothesis only where it sounds like what was heard ------------


def test_a_garbled_open_text_takes_the_grammar_hypothesis_that_sounds_like_it_and_confirms_it(graph):
    engine = started(graph)
    actions = engine.handle(Heard("Make me of your lip.", 0.55, alternatives=(("take me off your list", 0.9),)))
    turn = engine.turns[-1]
    assert turn.result == "confirm" and turn.intent == "dnc" and turn.text == "take me off your list"
    assert turn.confidence is not None and turn.confidence < 0.9
    assert engine.outcome is None and any("stop calling you" in t for t in said(actions))


def test_a_grammar_hypothesis_unlike_the_open_text_is_never_taken(graph):
    # the grammar forced a paraphrase onto a phrase; the open-vocabulary text says otherwise
    engine = started(graph)
    engine.handle(Heard("Sorry, my dog just knocked the coffee over.", 0.8, alternatives=(("do not call me", 0.95),)))
    assert engine.turns[-1].result == "no_match" and engine.outcome is None


def test_a_grammar_hypothesis_that_adds_a_negation_never_sounds_alike(graph):
    matcher = graph.nodes["greeting"].matcher
    assert matcher.sounds_alike("Make me of your lip.", "take me off your list") >= 0.6
    assert matcher.sounds_alike("Fine, you've got one minute.", "i do not have a minute") == 0.0
    engine = started(graph)
    engine.handle(Heard("Fine, you've got one minute.", 0.5, alternatives=(("i do not have a minute", 0.9),)))
    assert engine.path[-1] != "ask_callback"


def test_the_open_text_wins_when_it_matches(graph):
    engine = started(graph)
    engine.handle(Heard("how much does it cost", 0.8, alternatives=(("stop calling me", 0.95),)))
    assert engine.path[-1] == "handoff_buying"


def test_a_second_opinion_is_asked_for_only_where_it_can_change_what_happens(graph):
    asked = []

    def opinion():
        asked.append(1)
        return (("take me off your list", 0.9),)

    engine = started(graph)
    engine.handle(Heard("how much does it cost", 0.8, second_opinion=opinion))
    assert engine.path[-1] == "handoff_buying" and asked == []
    engine = started(graph)
    engine.handle(Heard("Make me of your lip.", 0.55, second_opinion=opinion))
    assert asked == [1] and engine.turns[-1].result == "confirm" and engine.turns[-1].intent == "dnc"
    # a match that would be confirmed: two recognisers that agree on it are sure enough to act
    engine = started(graph)
    engine.handle(Heard("take me off your list", 0.5, second_opinion=opinion))
    assert asked == [1, 1] and engine.outcome == "dnc"


def test_something_heard_that_the_open_pass_could_not_tell_is_a_no_match_not_a_silence(graph):
    engine = started(graph)
    engine.handle(Heard("", 0.0, alternatives=(("yes", 0.3),)))  # the grammar unsure too
    assert engine.turns[-1].result == "no_match" and engine.turns[-1].kind == "heard"


def test_two_pass_stream_runs_the_grammar_only_while_a_barge_in_wants_words():
    from voicebot.speech.asr import AsrResult
    from voicebot.speech.two_pass import TwoPassStream

    class Stub:
        rate_hz = 8000

        def __init__(self, text, partial=""):
            self.text, self.partial, self.pushed, self.vocab, self.resets = text, partial, 0, "unset", 0

        def set_vocabulary(self, phrases):
            self.vocab = phrases

        def push(self, pcm):
            self.pushed += 1
            return [AsrResult(self.partial, 1.0, False)] if self.partial else []

        def peek(self):
            return AsrResult(self.partial or self.text, 0.7, False)

        def flush(self):
            return AsrResult(self.text, 0.6, True)

        def reset(self):
            self.resets += 1

    open_pass, grammar = Stub("Take me off your lute."), Stub("take me off your list", partial="take me off")
    stream = TwoPassStream(open_pass, grammar)
    stream.set_vocabulary(["take me off your list", "yes"])
    # an answer after the question: the open pass alone, the grammar not even fed...
    assert stream.push(b"\0" * 320) == [] and grammar.pushed == 0
    assert stream.peek().alternatives == ()
    final = stream.flush()
    assert final == AsrResult("Take me off your lute.", 0.6, True) and grammar.pushed == 0
    # ...unless the script asks for a second opinion: then the grammar decodes the whole answer
    assert final.second_opinion is not None and final.second_opinion() == (("take me off your list", 0.6),)
    assert grammar.pushed == 1
    stream.push(b"\0" * 320)
    stale = stream.flush().second_opinion
    stream.set_vocabulary(["yes", "no"])  # the next node listens: an opinion on the old phrases is none
    assert stale is not None and stale() == ()
    stream.set_vocabulary(["take me off your list", "yes"])
    # a barge-in pauses the prompt: from the onset the grammar streams words to decide it with
    stream.reset()
    stream.want_hints(True)
    pushed = stream.push(b"\0" * 320)
    assert [(r.text, r.alternatives) for r in pushed] == [("", (("take me off", 1.0),))]  # a hint, not the text
    peeked = stream.peek()  # at a pause: what the open pass hears decides whether the answer is complete
    assert peeked.text == "Take me off your lute." and peeked.alternatives == (("take me off", 0.7),)
    final = stream.flush()  # it heard the whole utterance: its text goes along as the alternative
    assert final.text == "Take me off your lute." and final.alternatives == (("take me off your list", 0.6),)
    # decided: the grammar forgets the turn, and the rest of it is the open pass's alone
    stream.push(b"\0" * 320)
    resets = grammar.resets
    stream.want_hints(False)
    assert grammar.resets == resets + 1
    fed = grammar.pushed
    assert stream.push(b"\0" * 320) == [] and grammar.pushed == fed
    assert stream.flush().alternatives == ()
    # hints asked for in the middle of an utterance: hints, but no alternative from half an utterance
    stream.push(b"\0" * 320)
    stream.want_hints(True)
    assert stream.push(b"\0" * 320) != []
    assert stream.flush().alternatives == ()
    stream.want_hints(False)
    stream.set_vocabulary(None)  # free text: no grammar, hints or not
    stream.want_hints(True)
    assert stream.push(b"\0" * 320) == [] and stream.flush().alternatives == ()
    assert stream.flush().second_opinion is None


# --- the real recognisers on spoken answers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def english_two_pass():
    from voicebot.config import AsrSettings
    from voicebot.speech.select import make_asr_engine

    engine = make_asr_engine(AsrSettings(), "en")
    assert engine.name == "whisper+pocketsphinx"
    return engine


def spoken(text: str, voice: str, snr_db: float, seed: int = 1) -> list[bytes]:
    from voicebot.peers.customer import speak

    return [NARROWBAND.silence()] * 10 + speak(text, NARROWBAND, voice=voice, snr_db=snr_db, seed=seed) + [NARROWBAND.silence()] * 60


def first_reply(graph, asr_engine, frames, node="greeting"):
    """The real session at ``node``: the reply is played once the question has been asked."""
    settings = SessionSettings.from_dialplan(graph)
    settings.detect_voicemail = False
    session = CallSession(graph, asr_engine.stream(NARROWBAND.rate_hz), FakePrompts(ms_per_char=10), {"first_name": "Anna"}, settings)
    sim = CallSimulator(NARROWBAND, [CustomerAudio(frames, 400, "listening")])
    sim.run(session, max_ms=60_000, at=node, until=lambda: bool(session.engine.turns))
    return session


def test_a_misheard_spoken_dnc_gets_the_confirmation_question_not_the_goodbye(graph, english_two_pass):
    # espeak-ng at 20 dB: Whisper hears "Make me off your lute"; the grammar pass hears the phrase
    session = first_reply(graph, english_two_pass, spoken("take me off your list", "en-us", 20.0))
    turn = session.engine.turns[0]
    assert turn.intent == "dnc" and turn.result == "confirm", turn
    assert session.engine.outcome is None and "dnc_goodbye" not in session.engine.path
    asked = [e for e in session.log if getattr(e, "prompt_id", "").startswith("greeting#confirm:dnc")]
    assert asked, [getattr(e, "prompt_id", "") for e in session.log]


def test_a_spoken_paraphrase_outside_the_phrase_lists_is_a_reprompt_not_an_action(graph, english_two_pass):
    # a closed grammar forces this onto some phrase of the greeting; now it is a reprompt
    session = first_reply(graph, english_two_pass, spoken("sorry my dog just knocked the coffee over", "piper:en_US-joe-medium", 20.0))
    turn = session.engine.turns[0]
    assert turn.result in ("no_match", "low_confidence"), turn
    assert session.engine.outcome is None and session.engine.path == ["greeting"]


def test_a_spoken_answering_machine_saying_not_available_is_voicemail_not_not_interested(graph, english_two_pass):
    from voicebot.peers.customer import speak

    greeting = (
        speak("Hi, this is Anna. I'm not available right now.", NARROWBAND, voice="en-us", snr_db=25.0)
        + [NARROWBAND.silence()] * 33  # 0.66 s: long enough to end a turn, short of a human's pause
        + speak(
            "Please leave your name and number after the tone, and I will call you back.", NARROWBAND, voice="en-us", snr_db=25.0, seed=2
        )
    )
    settings = SessionSettings.from_dialplan(graph)
    session = CallSession(graph, english_two_pass.stream(NARROWBAND.rate_hz), FakePrompts(ms_per_char=10), {"first_name": "Anna"}, settings)
    CallSimulator(NARROWBAND, [CustomerAudio(greeting, 0, "answer")]).run(session, max_ms=60_000)
    assert session.result_outcome == "voicemail"
    assert all(t.intent != "not_interested" for t in session.engine.turns) and session.engine.outcome != "not_interested"


def test_a_short_answer_the_open_pass_could_not_make_out_takes_the_grammar_word(graph):
    engine = started(graph, "propose_meeting")
    engine.handle(Heard("to make", 0.2, alternatives=(("tuesday", 0.9),)))
    assert engine.turns[-1].intent == "first_option" and engine.turns[-1].confidence == 0.7
    engine = started(graph)  # but never for a long answer the grammar forced onto a short phrase
    engine.handle(Heard("I'll read my mouth just after the coffee over", 0.3, alternatives=(("yes", 0.9),)))
    assert engine.turns[-1].result in ("no_match", "low_confidence")
    engine = started(graph)  # and a weak short DNC is still confirmed
    engine.handle(Heard("", 0.0, alternatives=(("stop calling me", 0.9),)))
    assert engine.turns[-1].result in ("no_match",)  # three words: not short
    engine = started(graph)  # nothing made out at all is no evidence for a phrase, however sure the grammar is
    engine.handle(Heard("", 0.0, alternatives=(("go ahead", 0.95),)))
    assert engine.turns[-1].result == "no_match" and engine.path == ["greeting"]
