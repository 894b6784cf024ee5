"""Telephony: the SIP outcome mapping (pure) and a real media worker against sipp UAS scenarios on 127.0.0.1.

Every sipp and worker process is stopped in a fixture's teardown; every wait
has a timeout.
"""

from __future__ import annotations

import socket
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import events_until_ended, free_port, tone

from voicebot.audio.frames import NARROWBAND, read_wav, rms_dbfs, split_frames
from voicebot.calls import outcomes
from voicebot.calls.outcomes import LocalCancel
from voicebot.config import Trunk

# --- outcomes: pure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, reason, outcome",
    [
        (486, "Busy Here", "busy"),
        (600, "Busy Everywhere", "busy"),
        (480, "Temporarily Unavailable", "no_answer"),
        (603, "Decline", "rejected"),
        (404, "Not Found", "invalid_number"),
        (484, "Address Incomplete", "invalid_number"),
        (503, "Service Unavailable", "trunk_error"),
        (500, "Server Internal Error", "trunk_error"),
        (403, "Forbidden", "trunk_error"),
        (488, "Not Acceptable Here", "trunk_error"),
    ],
)
def test_final_responses_map_to_outcomes_and_keep_the_code(code: int, reason: str, outcome: str) -> None:
    result = outcomes.unanswered(code, reason, got_response=True)
    assert (result.outcome, result.sip_code, result.reason) == (outcome, code, reason)


def test_a_408_from_the_far_end_is_no_answer_but_our_own_timeout_is_a_trunk_error() -> None:
    assert outcomes.unanswered(408, "Request Timeout", got_response=True).outcome == "no_answer"
    assert outcomes.unanswered(408, "Request Timeout", got_response=False).outcome == "trunk_error"


def test_ring_timeout_is_no_answer_unless_the_trunk_never_replied() -> None:
    rang = outcomes.unanswered(487, "Request Terminated", got_response=True, cancel=LocalCancel.RING_TIMEOUT)
    assert (rang.outcome, rang.sip_code) == ("no_answer", 487)
    silent = outcomes.unanswered(487, "Request Terminated", got_response=False, cancel=LocalCancel.RING_TIMEOUT)
    assert (silent.outcome, silent.sip_code) == ("trunk_error", None)


def test_a_call_we_abandon_before_answer_is_worker_lost() -> None:
    assert outcomes.unanswered(487, "Request Terminated", got_response=True, cancel=LocalCancel.ABANDONED).outcome == "worker_lost"


def test_a_call_the_manager_hangs_up_before_answer_is_stopped() -> None:
    stopped = outcomes.unanswered(487, "Request Terminated", got_response=True, cancel=LocalCancel.STOPPED)
    assert (stopped.outcome, stopped.reason) == ("stopped", "ended by the dialer before answer")


def test_the_sip_outcomes_are_system_outcomes() -> None:
    from voicebot.config import SYSTEM_OUTCOMES

    sip = {outcomes.BUSY, outcomes.NO_ANSWER, outcomes.REJECTED, outcomes.INVALID_NUMBER, outcomes.TRUNK_ERROR, outcomes.WORKER_LOST}
    assert sip <= SYSTEM_OUTCOMES


# --- frame copy: no Endpoint needed --------------------------------------------------------


def test_frames_copy_through_ctypes_both_ways_in_microseconds() -> None:
    pj = pytest.importorskip("pjsua2")
    from voicebot.telephony.media_port import read_frame, write_frame

    pcm = bytes(range(256)) + bytes(64)
    frame = pj.MediaFrame()
    write_frame(frame, pcm)
    assert frame.size == 320 and read_frame(frame) == pcm
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        write_frame(frame, pcm)
        read_frame(frame)
    per_frame_us = (time.perf_counter() - started) / n * 1e6
    assert per_frame_us < 100, f"{per_frame_us:.1f} µs per frame in and out"  # bytes(frame.buf): 150-330 µs one way


# --- against sipp ------------------------------------------------------------------------------

# sipp comes from Debian's sip-tester, which `make setup` installs: a missing sipp fails, never skips.
needs_sipp = pytest.mark.usefixtures("sipp")


def _ended(events: list):
    from voicebot.calls.messages import Ended

    return [e for e in events if isinstance(e, Ended)]


@needs_sipp
def test_answered_call_carries_media_both_ways_and_dtmf(sipp, worker, tmp_path: Path) -> None:
    from voicebot.calls.messages import Answered, Dial, Dialled, DtmfIn, Ringing

    port = sipp("uas_answer", "-rtp_echo", "-d", "2000", "-m", "1")
    w, _ = worker(port)
    w.send(Dial("a1", "100"))
    events = events_until_ended(w, {"a1"})
    kinds = [type(e) for e in events]
    assert kinds[:3] == [Dialled, Ringing, Answered]
    assert DtmfIn("a1", "1") in events
    (ended,) = _ended(events)
    assert (ended.outcome, ended.sip_code, ended.hangup_by) == ("answered", 200, "remote")
    assert ended.session_outcome == "customer_hangup"
    assert 1800 <= ended.talk_ms <= 4000 and ended.callback_errors == 0
    assert ended.frames_in >= 80 and ended.frames_out >= 80
    # sipp echoed our 440 Hz tone: what we recorded is loud and has its pitch
    pcm, rate = read_wav(tmp_path / "a1.wav")
    loud = [f for f in split_frames(pcm, NARROWBAND) if rms_dbfs(f) > -30]
    assert len(loud) >= 50, f"{len(loud)} non-silent frames received"
    spectrum = np.abs(np.fft.rfft(np.frombuffer(b"".join(loud), dtype="<i2")))
    assert abs(np.argmax(spectrum) * rate / (2 * (len(spectrum) - 1)) - 440) < 10


@needs_sipp
def test_the_bot_hangs_up_when_its_session_ends(sipp, worker) -> None:
    from voicebot.calls.messages import Dial

    port = sipp("uas_answer", "-rtp_echo", "-d", "10000", "-m", "1")
    w, _ = worker(port, hang_up_after_ms=1000)
    w.send(Dial("a1", "100"))
    (ended,) = _ended(events_until_ended(w, {"a1"}))
    assert (ended.outcome, ended.sip_code, ended.hangup_by, ended.session_outcome) == ("answered", 200, "local", "completed")
    assert 900 <= ended.talk_ms <= 3000


@needs_sipp
@pytest.mark.parametrize(
    "code, reason, outcome",
    [
        (486, "Busy Here", "busy"),
        (503, "Service Unavailable", "trunk_error"),
        (404, "Not Found", "invalid_number"),
        (603, "Decline", "rejected"),
    ],
)
def test_rejected_calls_get_their_outcome_and_sip_code(sipp, worker, code: int, reason: str, outcome: str) -> None:
    from voicebot.calls.messages import Dial

    port = sipp(f"uas_{code}", "-m", "1")
    w, _ = worker(port)
    w.send(Dial("a1", "100"))
    (ended,) = _ended(events_until_ended(w, {"a1"}))
    assert (ended.outcome, ended.sip_code, ended.reason, ended.talk_ms) == (outcome, code, reason, 0)


@needs_sipp
def test_busy_over_tcp(sipp, worker) -> None:
    from voicebot.calls.messages import Dial, Dialled

    port = sipp("uas_486", "-m", "1", tcp=True)
    w, _ = worker(port, tcp=True)
    w.send(Dial("a1", "100"))
    events = events_until_ended(w, {"a1"})
    assert any(isinstance(e, Dialled) and e.uri.endswith(";transport=tcp") for e in events)
    (ended,) = _ended(events)
    assert (ended.outcome, ended.sip_code) == ("busy", 486)


@needs_sipp
def test_k_calls_ring_out_the_next_is_refused_and_all_end_as_no_answer(sipp, worker) -> None:
    from voicebot.calls.messages import Dial, DialFailed, Ringing

    port = sipp("uas_ring", "-m", "10")
    w, ready = worker(port, ring_timeout_s=1.5)
    k = ready.max_calls
    assert k >= 1
    ids = [f"a{i}" for i in range(k + 1)]
    for attempt_id in ids:
        w.send(Dial(attempt_id, "100"))
    events = events_until_ended(w, set(ids))
    failed = [e for e in events if isinstance(e, DialFailed)]
    # the PyPI wheel allows 4 calls: the 5th makeCall fails with PJ_ETOOMANY
    assert [(f.attempt_id, f.code) for f in failed] == [(ids[-1], "sip-too-many-calls")]
    assert {e.attempt_id for e in events if isinstance(e, Ringing)} == set(ids[:k])
    ended = _ended(events)
    assert sorted((e.attempt_id, e.outcome, e.sip_code) for e in ended) == [(a, "no_answer", 487) for a in ids[:k]]
    assert all(1400 <= e.setup_ms <= 3000 for e in ended)


@needs_sipp
def test_a_duplicate_attempt_is_never_dialled_twice(sipp, worker) -> None:
    from voicebot.calls.messages import Dial, DialFailed

    port = sipp("uas_486", "-m", "1")
    w, _ = worker(port)
    w.send(Dial("a1", "100"))
    assert len(_ended(events_until_ended(w, {"a1"}))) == 1
    w.send(Dial("a1", "100"))
    assert w.next_event(5) == DialFailed("a1", "duplicate-attempt", "this worker already dialled this attempt")


def test_a_silent_trunk_is_a_trunk_error(worker) -> None:
    from voicebot.calls.messages import Dial

    w, _ = worker(free_port(), ring_timeout_s=1.0)  # nothing listens there
    w.send(Dial("a1", "100"))
    (ended,) = _ended(events_until_ended(w, {"a1"}))
    assert (ended.outcome, ended.sip_code) == ("trunk_error", None)


@needs_sipp
def test_the_greeting_starts_right_after_the_answer(sipp, tmp_path: Path, capsys) -> None:
    """The real call session in a worker: 200 OK → first greeting frame, measured and printed."""
    from voicebot.apps.bot_session import BotSessions
    from voicebot.calls.messages import Dial
    from voicebot.dialplan import load_dialplan
    from voicebot.script.engine import ScriptEngine
    from voicebot.speech.piper_tts import PiperTts
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    demo = tmp_path / "demo.yaml"
    demo.write_text(
        (Path(__file__).parent.parent / "dialplans" / "demo_en.yaml")
        .read_text()
        .replace("  ring_timeout_s: 30s", "  ring_timeout_s: 30s\n  record_calls: true")
    )
    contact = {"first_name": "Anna", "company": "Northwind Traders"}
    graph = load_dialplan(demo).graph
    greeting = ScriptEngine(graph, contact).start()[0].text
    prompts = tmp_path / "prompts"
    PromptCache(prompts, PiperTts("en_US-joe-medium")).get(greeting, NARROWBAND.rate_hz)  # as the campaign pre-renders it

    port = sipp("uas_answer", "-rtp_echo", "-d", "3000", "-m", "1")
    trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{port}")
    calls = tmp_path / "calls"
    w = WorkerProcess(WorkerSettings(trunk, BotSessions(demo, prompts, calls_dir=calls)))
    try:
        w.start(timeout_s=60)  # loads Piper and PocketSphinx before Ready
        w.send(Dial("g1", "100", tuple(contact.items())))
        (ended,) = _ended(events_until_ended(w, {"g1"}, timeout_s=30))
    finally:
        assert w.stop(timeout_s=15) == 0
    with capsys.disabled():
        print(f"\n  200 OK → first greeting frame: {ended.first_sound_out_ms} ms; its echo back from sipp: {ended.first_sound_in_ms} ms")
    assert (ended.outcome, ended.sip_code) == ("answered", 200)
    assert ended.callback_errors == 0
    assert ended.first_sound_out_ms is not None and ended.first_sound_out_ms <= 300
    assert ended.first_sound_in_ms is not None  # the greeting really went out over RTP and came back
    # the call's record: a stereo recording (sipp's echo on the left, the bot on the right) and its log
    import json

    log = json.loads((calls / "g1.json").read_text())
    assert ended.record == log  # the record came on the Ended; the file is its copy
    assert log["transcript"][0] == {"speaker": "bot", "text": greeting}
    assert log["path"][0] == "greeting"
    with wave.open(str(calls / "g1.wav")) as rec:
        assert (rec.getnchannels(), rec.getframerate()) == (2, 8000)
        stereo = np.frombuffer(rec.readframes(rec.getnframes()), dtype="<i2").reshape(-1, 2)
    assert stereo.shape[0] >= 8000 * 2  # the call lasted about 3 s
    assert np.abs(stereo[:, 1]).max() > 3000 and np.abs(stereo[:, 0]).max() > 1000  # the bot spoke; its echo came back


def test_inbound_calls_are_declined(worker) -> None:
    """An outbound dialer takes no calls: an INVITE to a worker gets 603, not pjsua2's default 500."""
    _, ready = worker(free_port())
    host, port = ready.local_address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = f"127.0.0.1:{s.getsockname()[1]}"
        body = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        invite = (
            f"INVITE sip:bot@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinbound1;rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=in1\r\nTo: <sip:bot@{host}>\r\n"
            f"Call-ID: inbound-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        )
        s.sendto(invite.encode(), (host, int(port)))
        finals = []
        deadline = time.monotonic() + 5
        while not finals and time.monotonic() < deadline:
            status = s.recv(65535).decode(errors="replace").split("\r\n", 1)[0]
            if not status.startswith("SIP/2.0 1"):
                finals.append(status)
    assert finals == ["SIP/2.0 603 Decline"]


@pytest.mark.parametrize("password, registered", [("secret", True), ("wrong", False)])
def test_registration_with_digest_auth(monkeypatch, tmp_path: Path, password: str, registered: bool) -> None:
    """A registered trunk: the worker answers the registrar's challenge with the password from the environment."""
    import subprocess

    from conftest import SCENARIOS

    from voicebot.telephony.playback import playback_sessions
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    port = free_port()
    registrar = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / "uas_register.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-nostdin",
            "-timeout",
            "15s",
            "-t",
            "u1",
            "-m",
            "1",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    monkeypatch.setenv("VOICEBOT_TEST_TRUNK_PASSWORD", password)  # the spawned worker inherits it
    trunk = Trunk(
        uri_template=f"sip:{{number}}@127.0.0.1:{port}",
        registrar=f"sip:127.0.0.1:{port}",
        username="bot",
        password_env="VOICEBOT_TEST_TRUNK_PASSWORD",
    )
    w = WorkerProcess(WorkerSettings(trunk, playback_sessions(tone())))
    try:
        w.start(timeout_s=15)
        # the scenario ends cleanly only after a correctly authenticated REGISTER got its 200
        code = registrar.wait(timeout=20)
    finally:
        if registrar.poll() is None:
            registrar.kill()
            registrar.wait(timeout=5)
        assert w.stop(timeout_s=10) == 0
    assert (code == 0) is registered


@needs_sipp
def test_a_call_that_reaches_the_max_duration_is_ended_by_the_bot(sipp, worker) -> None:
    """sipp answers and sends no RTP at all: the session's clock must still run (silence in), and the
    worker ends the call at max_call_duration_s with that outcome in the session's record."""
    from voicebot.calls.messages import Dial

    port = sipp("uas_answer", "-d", "10000", "-m", "1")
    w, _ = worker(port, max_call_duration_s=2.0)
    w.send(Dial("a1", "100"))
    (ended,) = _ended(events_until_ended(w, {"a1"}))
    assert (ended.outcome, ended.hangup_by, ended.session_outcome) == ("answered", "local", "max_duration")
    assert 1900 <= ended.talk_ms <= 2600
    assert ended.frames_in >= 80  # no RTP came, yet the inbound clock ticked (timeouts depend on it)
