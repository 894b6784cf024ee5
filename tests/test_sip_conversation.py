"""Whole conversations over SIP: the real bot in a media worker, baresip as the person.

The customer is a baresip that auto-answers and plays a WAV of spoken answers
laid out where the bot will listen (``voicebot.peers.customer``); it records
what it hears. The bot runs PocketSphinx and Piper exactly as in a campaign.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import structlog.testing
from conftest import chunks_found, heard_at, locate

from voicebot.apps.bot_session import BotSessions
from voicebot.audio.frames import NARROWBAND, read_wav
from voicebot.calls.messages import DialFailed, Ended, HandoffRequested
from voicebot.calls.placer import NoCapacity
from voicebot.config import AsrSettings, Trunk
from voicebot.dialplan import load_dialplan
from voicebot.peers.customer import script_customer, speak
from voicebot.session import CallSession
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.select import make_asr_engine
from voicebot.speech.tts import make_tts
from voicebot.telephony.pool import WorkerPool
from voicebot.telephony.worker import WorkerSettings

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "dialplans" / "demo_en.yaml"
CONTACT = {"first_name": "Anna", "company": "Northwind Traders"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prompts")


def recording_dialplan(folder: Path, extra: str = "") -> Path:
    path = folder / "demo.yaml"
    text = DEMO.read_text().replace("  ring_timeout_s: 30s", "  ring_timeout_s: 30s\n  record_calls: true")
    path.write_text(text + extra)
    return path


def rehearse(dialplan: Path, prompts: Path, answers: list[str], **kwargs):
    """The customer's WAV for these answers, timed against this dialplan's prompts."""
    loaded = load_dialplan(dialplan)
    speech = loaded.dialplan.speech
    cache = PromptCache(prompts, make_tts(speech.tts, speech.language, None))
    asr = make_asr_engine(speech.asr, speech.language, None)
    frames = [speak(text, NARROWBAND, seed=i) for i, text in enumerate(answers)]
    return script_customer(CallSession(loaded.graph, asr.stream(NARROWBAND.rate_hz), cache, CONTACT), frames, **kwargs)


@contextlib.contextmanager
def bot_pool(dialplan: Path, prompts: Path, uri_port: int, calls: Path, concurrency: int) -> Iterator[WorkerPool]:
    """A worker pool running the dialplan's bot, its trunk at 127.0.0.1:``uri_port``; every worker must exit 0."""
    trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{uri_port}")
    pool = WorkerPool(WorkerSettings(trunk, BotSessions(dialplan, prompts, calls_dir=calls)), concurrency=concurrency)
    try:
        yield pool
    finally:
        codes = pool.close(timeout_s=15)
    assert set(codes.values()) == {0}, codes


def until_ended(
    pool: WorkerPool,
    attempt_ids: Iterable[str],
    timeout_s: float,
    poll_s: float = 1.0,
    each_turn: Callable[[list, dict], None] | None = None,
) -> tuple[dict, list]:
    """The pool's events until each of these calls ended: ({attempt id: Ended or DialFailed}, every event).
    ``each_turn(events, ended)`` runs after every wait, for a test to look at the pool while calls are up."""
    wanted, events, ended = set(attempt_ids), [], {}
    deadline = time.monotonic() + timeout_s
    while not wanted <= ended.keys():
        assert time.monotonic() < deadline, f"the calls did not end within {timeout_s} s: {events}"
        if (pooled := pool.next_event(poll_s)) is not None:
            events.append(pooled.event)
            if isinstance(pooled.event, (Ended, DialFailed)):
                ended[pooled.event.attempt_id] = pooled.event
        if each_turn is not None:
            each_turn(events, ended)
    return ended, events


def run_calls(dialplan: Path, prompts: Path, uri_port: int, numbers: dict[str, str], calls: Path, timeout_s: float = 120.0):
    """Calls through one worker pool, as a campaign places them: ({attempt id: Ended}, the worker events)."""
    with bot_pool(dialplan, prompts, uri_port, calls, concurrency=len(numbers)) as pool:
        for attempt_id, number in numbers.items():
            pool.dial(attempt_id, number, tuple(CONTACT.items()))
        ended, events = until_ended(pool, numbers, timeout_s)
    assert all(isinstance(e, Ended) for e in ended.values()), ended
    return ended, events


def run_call(dialplan: Path, prompts: Path, uri_port: int, number: str, calls: Path, timeout_s: float = 120.0):
    """One call: (Ended, the worker events, the call's record)."""
    ended, events = run_calls(dialplan, prompts, uri_port, {"c1": number}, calls, timeout_s)
    record = ended["c1"].record  # the result travels on the Ended; the JSON file is an optional copy
    assert record is not None and record == json.loads((calls / "c1.json").read_text())
    return ended["c1"], events, record


def transcribe(wav: Path, start_s: float, end_s: float) -> str:
    """Unrestricted PocketSphinx (its n-gram model, no grammar) over part of a recording."""
    pcm, rate = read_wav(wav)
    stream = make_asr_engine(AsrSettings(engine="pocketsphinx"), "en", None).stream(rate)
    stream.set_vocabulary(None)
    stream.push(pcm[int(start_s * rate) * 2 : int(end_s * rate) * 2])
    return stream.flush().text


def test_whole_sales_conversations_over_sip_four_at_once_on_one_worker(baresip, prompts, tmp_path: Path, capsys) -> None:
    """Four customers on one worker (K = 4) give the same answers, one of them free text.

    Each call follows the script to a booked meeting, and the bot heard each answer when
    the customer said it: a decoder loading the n-gram model mid-call once held the GIL for
    ~0.35 s, its end of utterance up to 0.9 s, the worker's media clock stalled and the
    jitter buffers dropped ~4 s of each customer's audio, and the script went astray.
    """
    dialplan = recording_dialplan(tmp_path)
    # the last "yes" answers a confirmation of the goodbye-ending "yes", when the bot asks for one
    answers = ["yes sure", "we keep them in a spreadsheet", "yes", "tuesday", "yes", "yes"]
    expected = ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"]
    track = rehearse(dialplan, prompts, answers)
    assert track.rehearsal.path == expected  # the rehearsal itself understood the answers
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))  # four calls to her at once

    ended, _ = run_calls(dialplan, prompts, anna.sip_port, {f"c{i}": "anna" for i in range(1, 5)}, tmp_path / "calls")

    records = {a: json.loads((tmp_path / "calls" / f"{a}.json").read_text()) for a in ended}
    sent = read_wav(tmp_path / "anna.wav")[0]
    said = [b"".join(speak(text, NARROWBAND, seed=i)) for i, text in enumerate(answers)]  # as rehearse() spoke them
    said = said[: len(track.answers_at_ms)]  # those the rehearsal placed on the track
    lost = {}
    for a in ended:
        heard = left_channel(tmp_path / "calls" / f"{a}.wav")
        sent_at = [locate(sent, answer)[0] for answer in said]
        # the answers said while the bot's call was up (one that went astray ends early); 8 kHz, 2 bytes a sample
        # only the answers this call took: a confirmation asked in the rehearsal may not be asked here
        taken = len(records[a]["turns"])
        lost[a] = [
            round(at - locate(heard, answer)[0], 2)
            for at, answer in list(zip(sent_at, said))[:taken]
            if at * 16000 + len(answer) <= len(heard)
        ]
    with capsys.disabled():
        for a, record in records.items():
            print(
                f"\n  {a} over SIP: {[(t['node'], t['text']) for t in record['turns']]}; 200 OK → greeting "
                f"{ended[a].first_sound_out_ms} ms; customer audio not yet heard at each answer: {lost[a]} s",
                end="",
            )
        print()
    # Loading the n-gram model mid-call lost 1.35 s a call here (and 3.7 s before its search was made cheaper).
    # Usually nothing is lost now; one run in five lost 0.5 s on all four calls at once while a prompt played
    # (no decoding then; cause not found): the bound separates that from the fault this test is for.
    assert all(shifts and all(abs(s) < 0.75 for s in shifts) for shifts in lost.values()), lost
    assert all(e.outcome == "answered" and e.sip_code == 200 for e in ended.values()), ended
    booked = [a for a, e in ended.items() if e.session_outcome == "meeting_booked" and records[a]["path"] == expected]
    # recognition over a phone line is not perfect: with the audio intact, one call of four may mishear an answer
    # (seen once in CI: "yes sure" heard as "we have a tool for that", the same audio as the other three)
    assert len(booked) >= 3, {a: records[a]["turns"] for a in ended}
    assert all(ended[a].hangup_by == "local" for a in booked)  # the bot said goodbye and hung up; the WAV went on
    # what the customer's phone received is the bot's speech: recognisable words of the greeting
    words = set(transcribe(anna.recordings()[0].heard, 0.0, 9.0).split())
    greeting_words = {"help", "companies", "third", "minute", "talk", "cloud", "hosting", "bills"}
    assert len(words & greeting_words) >= 3, words


def left_channel(wav: Path) -> bytes:
    """The customer's side of a call recording (stereo: customer left, bot right)."""
    import wave

    import numpy as np

    with wave.open(str(wav)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return frames[:, 0].tobytes()


def operator_dialplan(folder: Path, operator_uri: str, mode: str, warm: bool = False, timeout_s: int = 20) -> Path:
    path = recording_dialplan(folder)
    text = path.read_text().replace('"sip:600@127.0.0.1:5090"', f'"{operator_uri}"')
    text = text.replace("    mode: transfer\n", f"    mode: {mode}\n    warm: {str(warm).lower()}\n    timeout_s: {timeout_s}s\n", 1)
    path.write_text(text)
    return path


def test_a_blind_transfer_connects_the_customer_to_the_operator(baresip, prompts, tmp_path: Path, capsys) -> None:
    from voicebot.peers.customer import speak as say

    operator_wav = tmp_path / "operator.wav"
    from voicebot.audio.frames import write_wav

    operator_greeting = say("sales team, good morning", NARROWBAND, snr_db=None)
    write_wav(operator_wav, b"".join(operator_greeting) + bytes(16000 * 30), 8000)
    operator = baresip("operator", operator_wav)
    dialplan = operator_dialplan(tmp_path, operator.uri, "transfer")
    track = rehearse(dialplan, prompts, ["how much does it cost"], tail_ms=15000)
    question_frames = speak("how much does it cost", NARROWBAND, seed=0)  # as rehearse() spoke it
    assert track.rehearsal.path == ["greeting", "handoff_buying"]
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))

    with structlog.testing.capture_logs() as logs:
        ended, events, record = run_call(dialplan, prompts, anna.sip_port, "anna", tmp_path / "calls")

    (handoff,) = [e for e in events if isinstance(e, HandoffRequested)]
    (logged,) = [entry for entry in logs if entry["event"] == "handoff_requested"]
    assert logged["node"] == "handoff_buying" and logged["contact"] == handoff.context["contact"]
    assert logged["transcript"] == handoff.context["transcript"] and logged["attempt_id"] == "c1"
    with capsys.disabled():
        print(f"\n  transfer: {ended.handoff}, {ended.session_outcome}, context node {handoff.context['node']}")
    assert (ended.outcome, ended.session_outcome, ended.handoff) == ("answered", "handoff", "transferred")
    assert handoff.context["node"] == "handoff_buying" and handoff.context["contact"]["first_name"] == "Anna"
    assert {"speaker": "customer", "text": record["transcript"][1]["text"]} in handoff.context["transcript"]
    assert record["handoff"]["ok"] is True and record["handoff"]["mode"] == "transfer"
    # the customer now talks with the operator. Anna's new call plays her WAV from the start:
    # let it run to her question, then the operator hangs up and both recordings are closed
    operator.wait_for_recording(seconds=13.0, timeout_s=30.0)
    operator.command("hangup")
    operator.wait_idle(timeout_s=10.0)
    (at_operator,) = operator.recordings()
    anna_calls = anna.recordings()
    assert len(anna_calls) == 2  # the bot's call, then the one the REFER made to the operator
    question = b"".join(question_frames)
    greeting = b"".join(operator_greeting)
    at, score = locate(read_wav(at_operator.heard)[0], question)
    back_at, back_score = locate(read_wav(anna_calls[1].heard)[0], greeting)
    with capsys.disabled():
        print(
            f"  the operator heard the customer's question at {at:.1f} s (match {score:.2f}); "
            f"the customer heard the operator at {back_at:.1f} s (match {back_score:.2f})"
        )
    assert score > 0.8 and back_score > 0.8


def test_a_warm_bridge_briefs_the_operator_then_joins_the_legs(baresip, prompts, tmp_path: Path, capsys) -> None:
    import threading

    from voicebot.audio.frames import write_wav

    # the operator answers at once, hears the briefing, presses 1 after 9 s, then speaks
    operator_greeting = speak("sales team, good morning", NARROWBAND, snr_db=None)
    operator_wav = tmp_path / "operator.wav"
    write_wav(operator_wav, bytes(16000 * 14) + b"".join(operator_greeting) + bytes(16000 * 30), 8000)
    operator = baresip("operator", operator_wav)
    dialplan = operator_dialplan(tmp_path, operator.uri, "bridge", warm=True)
    after = speak("i would like to know the price for forty servers", NARROWBAND, seed=7)
    track = rehearse(dialplan, prompts, ["how much does it cost"], after=after, after_gap_ms=13000, tail_ms=20000)
    assert track.rehearsal.path == ["greeting", "handoff_buying"]
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))

    problems: list[BaseException] = []

    def operator_side() -> None:
        try:
            operator.wait_for_recording(seconds=9.0, timeout_s=60.0)
            operator.command("sndcode", "1")  # RFC 2833: accept the call
            operator.wait_for_recording(seconds=19.0, timeout_s=30.0)
            operator.command("hangup")  # the operator finishes the call
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            problems.append(e)

    actions = threading.Thread(target=operator_side, daemon=True)
    actions.start()
    ended, events, record = run_call(dialplan, prompts, anna.sip_port, "anna", tmp_path / "calls")
    actions.join(timeout=30)
    assert not problems, problems
    anna.wait_idle(timeout_s=10.0)
    operator.wait_idle(timeout_s=10.0)

    (handoff,) = [e for e in events if isinstance(e, HandoffRequested)]
    assert (ended.outcome, ended.session_outcome, ended.handoff) == ("answered", "handoff", "bridged")
    assert record["handoff"]["ok"] is True and record["handoff"]["mode"] == "bridge"
    speech = load_dialplan(dialplan).dialplan.speech
    cache = PromptCache(prompts, make_tts(speech.tts, speech.language, None))
    briefing = cache.get(handoff.context["briefing"], NARROWBAND.rate_hz)  # the same bytes the worker played
    hold = cache.get("Please stay on the line, I am connecting you.", NARROWBAND.rate_hz)

    (at_operator,) = operator.recordings()
    operator_heard = read_wav(at_operator.heard)[0]
    briefing_at, briefing_score = locate(operator_heard, briefing)  # the bot's own port: sample-exact
    # through the bridge a jitter buffer may drop or repeat a frame: compare in 0.3 s chunks
    customer = b"".join(after)
    customer_score = chunks_found(operator_heard, customer, 0.9)
    customer_at = heard_at(operator_heard, customer)
    (at_anna,) = anna.recordings()
    anna_heard = read_wav(at_anna.heard)[0]
    hold_at, hold_score = locate(anna_heard, hold)
    op_score = chunks_found(anna_heard, b"".join(operator_greeting), 0.9)
    op_at = heard_at(anna_heard, b"".join(operator_greeting))
    with capsys.disabled():
        print(
            f"\n  briefing: {handoff.context['briefing']!r}\n  operator heard the briefing at {briefing_at:.1f} s ({briefing_score:.2f}), "
            f"the customer at {customer_at:.1f} s ({customer_score:.2f}); the customer heard hold at {hold_at:.1f} s "
            f"({hold_score:.2f}), the operator at {op_at:.1f} s ({op_score:.2f})"
        )
    assert briefing_score > 0.8 and customer_score > 0.8 and hold_score > 0.8 and op_score > 0.8
    assert briefing_at + len(briefing) / 16000 <= customer_at  # the briefing came before the customer's voice
    assert hold_at < op_at
    assert "Anna" in handoff.context["briefing"] and "Northwind Traders" in handoff.context["briefing"]


@pytest.mark.parametrize("mode", ["transfer", "bridge"])
def test_a_busy_operator_sends_the_call_back_to_the_script(mode, baresip, sipp, prompts, tmp_path: Path) -> None:
    busy_port = sipp("uas_486", "-m", "1")
    dialplan = operator_dialplan(tmp_path, f"sip:600@127.0.0.1:{busy_port}", mode, warm=mode == "bridge")
    track = rehearse(dialplan, prompts, ["how much does it cost"], tail_ms=20000)
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))

    ended, _, record = run_call(dialplan, prompts, anna.sip_port, "anna", tmp_path / "calls")

    assert ended.handoff == "failed"
    assert record["path"] == ["greeting", "handoff_buying", "operator_unavailable"]  # the script's on_transfer_fail
    assert ended.session_outcome == "callback" and ended.hangup_by == "local"
    assert record["handoff"]["ok"] is False and "486" in record["handoff"]["reason"], record["handoff"]


@pytest.mark.parametrize("key", ["2", None], ids=["declined", "timeout"])
def test_an_operator_who_declines_or_never_accepts_sends_the_call_back(key, baresip, prompts, tmp_path: Path) -> None:
    import threading

    from voicebot.audio.frames import write_wav

    operator_wav = tmp_path / "operator.wav"
    write_wav(operator_wav, bytes(16000 * 40), 8000)
    operator = baresip("operator", operator_wav)
    dialplan = operator_dialplan(tmp_path, operator.uri, "bridge", warm=True, timeout_s=6)
    track = rehearse(dialplan, prompts, ["how much does it cost"], tail_ms=25000)
    anna = baresip("anna", track.write(tmp_path / "anna.wav", NARROWBAND.rate_hz))
    if key is not None:

        def press() -> None:
            operator.wait_for_recording(seconds=2.0, timeout_s=60.0)
            operator.command("sndcode", key)

        threading.Thread(target=press, daemon=True).start()

    ended, _, record = run_call(dialplan, prompts, anna.sip_port, "anna", tmp_path / "calls")

    assert ended.handoff == "failed" and ended.session_outcome == "callback"
    assert record["path"] == ["greeting", "handoff_buying", "operator_unavailable"]
    reason = record["handoff"]["reason"]
    assert ("pressed 2" in reason) if key else ("within 6 s" in reason), reason
    operator.wait_idle(timeout_s=10.0)  # the bot hung up the operator's leg


def test_bridges_always_find_a_call_for_the_operator_leg(baresip, prompts, tmp_path: Path, capsys) -> None:
    """A bridged handoff dials the operator from the customer's worker, whose pjsua takes K calls in all.

    With a bridging dialplan a worker keeps one call free for the next operator leg
    and counts the legs that are up: K = 4 takes 3 customers, 2 while one or two
    bridges are up (the pool must not give it a customer who could not be handed off).
    """
    from voicebot.audio.frames import write_wav

    operator_wav = tmp_path / "operator.wav"
    write_wav(operator_wav, b"".join(speak("sales team, good morning", NARROWBAND, snr_db=None)) + bytes(16000 * 40), 8000)
    operator = baresip("operator", operator_wav)
    dialplan = operator_dialplan(tmp_path, operator.uri, "bridge", warm=False)
    track = rehearse(dialplan, prompts, ["how much does it cost"], tail_ms=12000)
    wav = track.write(tmp_path / "customer.wav", NARROWBAND.rate_hz)
    customers = baresip("anna", wav)  # two calls to one baresip user: each plays the WAV from its start
    least_free, refused = None, None

    with bot_pool(dialplan, prompts, customers.sip_port, tmp_path / "calls", concurrency=3) as pool:

        def while_both_are_bridged(events: list, ended: dict) -> None:
            nonlocal least_free, refused
            if sum(isinstance(e, HandoffRequested) for e in events) == 2 and not ended:
                least_free = pool.free_slots if least_free is None else min(least_free, pool.free_slots)
                if least_free == 0 and refused is None:
                    try:
                        pool.dial("c3", "nobody", ())
                        refused = False
                    except NoCapacity:
                        refused = True

        assert (pool.workers, pool.capacity) == (1, 3)  # K = 4: one call kept for an operator leg
        for attempt_id in ("c1", "c2"):
            pool.dial(attempt_id, "anna", tuple(CONTACT.items()))
        ended, _ = until_ended(pool, ("c1", "c2"), 90.0, poll_s=0.2, each_turn=while_both_are_bridged)
        back = time.monotonic() + 10
        while pool.free_slots < 3 and time.monotonic() < back:  # the workers' Capacity after the operator legs are gone
            pool.next_event(0.2)
        free_after = pool.free_slots
    with capsys.disabled():
        print(
            f"\n  two bridges on one worker: {[e.handoff for e in ended.values()]}; free slots while both were up: "
            f"{least_free} (a third customer refused: {refused}); afterwards {free_after}"
        )
    assert all(isinstance(e, Ended) and e.handoff == "bridged" for e in ended.values()), ended
    assert least_free == 0 and refused is True  # bridges up: 2 customers at most, and both are here
    assert free_after == 3
