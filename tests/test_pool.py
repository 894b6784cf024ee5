"""The worker pool: real media worker processes against sipp UAS scenarios on 127.0.0.1.

Every pool is closed (its workers stopped, then killed) and every sipp killed
by PID in fixture teardowns, also when a test fails; every wait has a deadline.
The measured numbers (worker start time, death detection, set-up rate) are printed.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from voicebot.calls.messages import (
    Answered,
    DialFailed,
    Dialled,
    Ended,
    Ready,
    Ringing,
)
from voicebot.calls.placer import NoCapacity, PlacerEvent, TokenBucket
from voicebot.config import Trunk
from voicebot.errors import ConfigError, SipError
from voicebot.telephony.playback import playback_sessions
from voicebot.telephony.pool import WorkerPool, WorkerStartError
from voicebot.telephony.worker import WorkerSettings, customer_capacity

# --- pacing: pure ------------------------------------------------------------------------------


def test_the_token_bucket_spaces_takes_by_its_rate_and_allows_its_burst() -> None:
    bucket = TokenBucket(10.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0
    burst = TokenBucket(10.0, burst=3)
    assert [burst.take(5.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.1)]
    assert burst.take(10.0) == 0.0  # refilled, never above its burst
    assert [burst.take(10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("kept", "operator_legs", "customers"),
    [
        (0, 0, 4),  # no bridging: every call is a customer's
        (1, 0, 3),  # one call kept for the next operator leg
        (1, 1, 2),  # a bridge up: its operator leg, and one still kept
        (1, 2, 2),  # two bridges: both customers are with operators, nobody left to ask
    ],
)
def test_customer_capacity_keeps_a_call_for_the_next_operator_leg(kept: int, operator_legs: int, customers: int) -> None:
    assert customer_capacity(4, kept, operator_legs) == customers
    if customers > operator_legs:  # someone may still ask: their operator leg must fit
        assert customers + operator_legs + kept <= 4


def test_a_set_up_rate_near_the_pjsua_abort_limit_is_refused_before_any_worker_starts() -> None:
    settings = WorkerSettings(Trunk(uri_template="sip:{number}@127.0.0.1:5060"), playback_sessions(b""))
    with pytest.raises(ConfigError, match="60 set-ups a second"):
        WorkerPool(settings, 4, setups_per_second_per_worker=60.0)
    assert not _media_workers()


# --- against sipp ------------------------------------------------------------------------------


def _media_workers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "media-worker"]


@pytest.fixture
def pool(capsys):
    """``pool(port, concurrency, rate=20.0, **settings) -> WorkerPool``; closed at teardown, its workers must exit 0."""
    pools: list[WorkerPool] = []

    def start(port: int, concurrency: int, rate: float = 20.0, share_models: bool = False, **settings) -> WorkerPool:
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{port}")
        p = WorkerPool(WorkerSettings(trunk, playback_sessions(b""), **settings), concurrency, rate, share_models=share_models)
        pools.append(p)
        with capsys.disabled():
            print(f"\n  {p.workers} workers started; spawn → Ready per worker: {', '.join(f'{s:.2f}' for s in p.start_seconds)} s")
        return p

    yield start
    codes = [p.close(timeout_s=10) for p in pools]
    assert not _media_workers(), "a media worker outlived its pool"
    assert all(c == 0 for pc in codes for c in pc.values()), f"worker exit codes {codes}"


def _until_all_end(p: WorkerPool, attempt_ids: set[str], timeout_s: float = 20.0) -> list[PlacerEvent]:
    events, open_ids = [], set(attempt_ids)
    deadline = time.monotonic() + timeout_s
    while open_ids:
        left = deadline - time.monotonic()
        assert left > 0, f"calls {sorted(open_ids)} did not end within {timeout_s} s"
        event = p.next_event(left)
        if event is None:
            continue
        events.append(event)
        if isinstance(event.event, (Ended, DialFailed)):
            open_ids.discard(event.event.attempt_id)
    return events


def _replacement_ready(p: WorkerPool, events: list[PlacerEvent], known: set[int], timeout_s: float = 20.0) -> PlacerEvent:
    """The Ready of a worker not in ``known`` (the ids before a death), from ``events`` or else the pool."""
    deadline = time.monotonic() + timeout_s
    while True:
        for e in events:
            if isinstance(e.event, Ready) and e.worker_id not in known:
                return e
        assert time.monotonic() < deadline, f"no worker beyond {sorted(known)} became ready within {timeout_s} s"
        if (event := p.next_event(deadline - time.monotonic())) is not None:
            events.append(event)


def _ended(events: list[PlacerEvent]) -> dict[str, PlacerEvent]:
    return {e.event.attempt_id: e for e in events if isinstance(e.event, Ended)}


def test_twenty_concurrent_calls_are_spread_over_workers_and_all_answered(sipp, pool, capsys) -> None:
    port = sipp("uas_answer", "-rtp_echo", "-d", "3000", "-m", "20", "-l", "20")
    p = pool(port, concurrency=20)
    assert p.workers >= 2  # the PyPI wheel: K = 4, so 5 workers
    ids = {f"a{i:02d}" for i in range(20)}
    placed = {a: p.dial(a, "100") for a in sorted(ids)}
    assert p.free_slots == 0
    events = _until_all_end(p, ids)
    ended = _ended(events)
    assert sorted((a, e.event.outcome, e.event.sip_code) for a, e in ended.items()) == [(a, "answered", 200) for a in sorted(ids)]
    assert all(2800 <= e.event.talk_ms <= 6000 and e.event.callback_errors == 0 for e in ended.values())
    carried = {a: e.worker_id for a, e in ended.items()}
    assert carried == placed
    per_worker = defaultdict(int)
    for worker_id in carried.values():
        per_worker[worker_id] += 1
    assert len(per_worker) == p.workers and max(per_worker.values()) <= 4, per_worker
    # each call's own events keep their order through the merge
    for a in ids:
        kinds = [type(e.event) for e in events if getattr(e.event, "attempt_id", None) == a]
        assert kinds[0] is Dialled and kinds[-1] is Ended and kinds.index(Answered) < len(kinds) - 1


@pytest.mark.parametrize("share_models", [False, True], ids=["spawned", "forked-from-model-host"])
def test_a_killed_worker_loses_exactly_its_calls_and_is_replaced(share_models, sipp, pool, capsys) -> None:
    port = sipp("uas_answer", "-rtp_echo", "-d", "3000", "-m", "10", "-l", "10")
    p = pool(port, concurrency=8, share_models=share_models)
    assert (p.host is not None) == share_models
    assert p.workers == 2
    ids = {f"a{i}" for i in range(8)}
    placed = {a: p.dial(a, "100") for a in sorted(ids)}
    events, answered = [], set()
    deadline = time.monotonic() + 10
    while answered != ids:
        assert time.monotonic() < deadline, f"only {sorted(answered)} answered"
        event = p.next_event(deadline - time.monotonic())
        if event is not None:
            events.append(event)
            if isinstance(event.event, Answered):
                answered.add(event.event.attempt_id)
    victim = placed["a0"]
    victim_pid = p.pids()[victim]
    lost_ids = {a for a, w in placed.items() if w == victim}
    assert len(lost_ids) == 4

    os.kill(victim_pid, signal.SIGKILL)  # a worker this pool started
    killed_at = time.monotonic()
    events += _until_all_end(p, ids)
    ended = _ended(events)
    lost = {a for a, e in ended.items() if e.event.outcome == "worker_lost"}
    assert lost == lost_ids
    for a in lost_ids:
        e = ended[a].event
        assert (e.sip_code, e.reason, e.session_outcome) == (None, "worker process died (exit code -9)", None)
        assert e.talk_ms > 0  # it had been answered
    assert sorted((a, e.event.outcome, e.event.sip_code) for a, e in ended.items() if a not in lost_ids) == [
        (a, "answered", 200) for a in sorted(ids - lost_ids)
    ]
    detected_s = min(ended[a].received_at for a in lost_ids) - killed_at
    assert detected_s < 1.0

    # the replacement comes up under a new worker id, and new calls succeed on both workers
    ready = _replacement_ready(p, events, set(placed.values()))
    replacement = ready.worker_id
    assert set(p.pids()) == {replacement} | (set(placed.values()) - {victim})
    assert victim_pid not in p.pids().values()
    with capsys.disabled():
        print(
            f"  SIGKILL → worker_lost records: {detected_s * 1000:.0f} ms; SIGKILL → replacement Ready: {ready.received_at - killed_at:.2f} s"
        )
    after = {p.dial("b0", "100"), p.dial("b1", "100")}
    assert replacement in after
    ended = _ended(_until_all_end(p, {"b0", "b1"}))
    assert sorted((a, e.event.outcome, e.event.sip_code) for a, e in ended.items()) == [("b0", "answered", 200), ("b1", "answered", 200)]


def test_a_full_pool_refuses_the_next_dial_before_it_reaches_pjsua(sipp, pool) -> None:
    port = sipp("uas_ring", "-m", "10")
    p = pool(port, concurrency=4, ring_timeout_s=1.5)
    assert p.workers == 1
    for i in range(4):
        p.dial(f"a{i}", "100")
    assert p.free_slots == 0
    with pytest.raises(NoCapacity, match="no free call slot for attempt a4: 4 calls in flight") as refused:
        p.dial("a4", "100")
    assert refused.value.code == "sip-no-capacity"
    events = _until_all_end(p, {f"a{i}" for i in range(4)})
    assert not [e for e in events if isinstance(e.event, DialFailed)]  # no sip-too-many-calls from the worker
    assert sorted(e.event.outcome for e in _ended(events).values()) == ["no_answer"] * 4
    assert p.free_slots == 4
    p.dial("a4", "100")  # refused, never dialled: it may be retried
    assert [e.event.outcome for e in _ended(_until_all_end(p, {"a4"})).values()] == ["no_answer"]


def test_set_ups_are_paced_per_worker(sipp, pool, capsys) -> None:
    rate = 5.0
    port = sipp("uas_486", "-m", "8")
    p = pool(port, concurrency=8, rate=rate)
    assert p.workers == 2
    ids = {f"a{i}" for i in range(8)}
    issued_at = time.monotonic()
    for a in sorted(ids):
        p.dial(a, "100")
    events = _until_all_end(p, ids)
    dialled = defaultdict(list)
    for e in events:
        if isinstance(e.event, Dialled):
            dialled[e.worker_id].append(e.received_at)
    assert sorted(len(t) for t in dialled.values()) == [4, 4]
    rates = []
    for times in dialled.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.5 / rate, f"set-ups {gaps} s apart at {rate}/s"  # read times: paced sends plus queue jitter
        rates.append((len(times) - 1) / (times[-1] - times[0]))
    assert max(rates) <= rate * 1.15
    assert max(t[0] for t in dialled.values()) - issued_at < 0.5  # the workers pace side by side
    assert sorted(e.event.outcome for e in _ended(events).values()) == ["busy"] * 8
    with capsys.disabled():
        print(f"  set-ups per worker at a configured {rate}/s: {', '.join(f'{r:.2f}' for r in rates)}/s")


def test_a_worker_that_cannot_start_fails_the_pool_with_its_reason(monkeypatch) -> None:
    monkeypatch.delenv("VOICEBOT_TEST_NO_SUCH_PASSWORD", raising=False)
    trunk = Trunk(uri_template="sip:{number}@127.0.0.1:5060", username="bot", password_env="VOICEBOT_TEST_NO_SUCH_PASSWORD")
    with pytest.raises(WorkerStartError, match="media worker 0 failed to start: sip-auth: .*VOICEBOT_TEST_NO_SUCH_PASSWORD") as failed:
        WorkerPool(WorkerSettings(trunk, playback_sessions(b"")), 8)
    assert failed.value.code == "sip-auth"
    assert not _media_workers()


def test_a_call_still_queued_is_cancelled_undialled_and_an_attempt_is_never_taken_twice(sipp, pool) -> None:
    port = sipp("uas_ring", "-m", "2")
    p = pool(port, concurrency=4, rate=1.0)  # a1 waits a second behind a0
    p.dial("a0", "100")
    p.dial("a1", "100")
    p.hangup("a1")
    with pytest.raises(SipError, match="attempt a0 was already dialled") as duplicate:
        p.dial("a0", "100")
    assert duplicate.value.code == "duplicate-attempt"
    events, deadline = [], time.monotonic() + 10
    while not any(isinstance(e.event, Ringing) for e in events):
        assert time.monotonic() < deadline, f"a0 never rang: {events}"
        if (event := p.next_event(deadline - time.monotonic())) is not None:
            events.append(event)
    p.hangup("a0")
    events += _until_all_end(p, {"a0"})  # a1 ended at once, before a0 rang
    assert [e.event for e in events if getattr(e.event, "attempt_id", None) == "a1"] == [
        DialFailed("a1", "pool-cancelled", "hung up before it was dialled")
    ]
    (ended,) = _ended(events).values()
    assert (ended.event.attempt_id, ended.event.hangup_by, ended.event.sip_code) == ("a0", "local", 487)
    assert p.free_slots == 4


def test_calls_still_queued_for_a_dead_worker_fail_undialled(sipp, pool) -> None:
    port = sipp("uas_ring", "-m", "5")
    p = pool(port, concurrency=4, rate=1.0)  # a1 and a2 wait behind a0
    placed = {p.dial(a, "100") for a in ("a0", "a1", "a2")}
    events, deadline = [], time.monotonic() + 10
    while not any(isinstance(e.event, Dialled) for e in events):
        assert time.monotonic() < deadline, f"a0 was never dialled: {events}"
        if (event := p.next_event(deadline - time.monotonic())) is not None:
            events.append(event)
    (worker,) = placed
    os.kill(p.pids()[worker], signal.SIGKILL)  # a worker this pool started
    events += _until_all_end(p, {"a0", "a1", "a2"})
    fates = {e.event.attempt_id: e.event for e in events if isinstance(e.event, (Ended, DialFailed))}
    assert (fates["a0"].outcome, fates["a0"].talk_ms) == ("worker_lost", 0)
    for a in ("a1", "a2"):  # never reached a worker: safe to retry at once
        assert fates[a] == DialFailed(a, "pool-worker-lost", "never dialled: worker process died (exit code -9)")
    replacement = _replacement_ready(p, events, {worker}).worker_id
    assert set(p.pids()) == {replacement}


def _memory_mb(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) // 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": fields["Private_Dirty"] + fields["Private_Clean"]}


def test_workers_forked_from_the_model_host_share_its_models(sipp, tmp_path, capsys) -> None:
    """The real session factory (Piper + PocketSphinx): loaded once in the host, used by every worker."""

    from voicebot.apps.bot_session import BotSessions

    demo = Path(__file__).parent.parent / "dialplans" / "demo_en.yaml"
    port = sipp("uas_answer", "-rtp_echo", "-d", "2500", "-m", "2", "-l", "2")
    trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{port}")
    p = WorkerPool(WorkerSettings(trunk, BotSessions(demo, tmp_path / "prompts")), concurrency=8)
    try:
        assert p.host is not None and p.workers == 2
        placed = {a: p.dial(a, "100", (("first_name", "Anna"),)) for a in ("m0", "m1")}
        assert len(set(placed.values())) == 2  # one call on each worker: both synthesise and recognise
        ended = _ended(_until_all_end(p, set(placed), timeout_s=30))
        assert all(e.event.outcome == "answered" and e.event.first_sound_out_ms is not None for e in ended.values())
        host = _memory_mb(p.host.process.pid)
        workers = [_memory_mb(pid) for pid in p.pids().values()]
    finally:
        codes = p.close(timeout_s=10)
    assert set(codes.values()) == {0}, codes
    with capsys.disabled():
        print(f"\n  model host: load {p.host.load_seconds:.1f} s, {host}; each forked worker after a call: {workers}")
    for w in workers:
        # most of the host's memory (the models) is mapped into the worker shared, not loaded again
        assert w["rss"] - w["private"] >= 0.6 * host["rss"], (w, host)


def test_calls_set_up_and_torn_down_at_40_a_second_leave_no_callback_error_and_no_crash(tmp_path: Path) -> None:
    """Each call's media port leaves the conference bridge while it is whole (MediaPort.close).

    Dropping ports instead let the clock thread call into half-destroyed ones: at this rate a few
    AttributeErrors from onFrameReceived within 10 s, and a worker that died with SIGSEGV at close.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "bench", "cps", "--duration", "10", "--json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["attempts"] >= 100 and result["failures"]["total"] == 0, result["failures"]
    assert result["worker_crashes"] == 0, result["crash_detail"]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    print(f"\n  {result['attempts']} calls at {result['achieved_per_s']}/s: no media callback error, no worker crash")
