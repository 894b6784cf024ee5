"""Concurrent calls with the full pipeline: does the media clock keep its 20 ms?

Per step of N calls: a pool sized for N (as a campaign with concurrency N
starts it) dials a sipp UAS whose every call streams speech with pauses
(``speech.ulaw``), so each call's VAD, barge-in, PocketSphinx (with the node's
grammar), script engine and prompts really run. After a warm-up, the window's
media-clock intervals (see ``timing``), the workers' CPU and memory are taken;
then every call is hung up and the pool closed.

The floor: sipp calling sipp at the same N, both streaming the same speech,
so the bot's CPU per call can be read as a multiple of a bare SIP/RTP endpoint's.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from voicebot.bench import procstat
from voicebot.bench.common import PoolWatch, Sipp, host_pid, machine, prepared_bot, target, trunk_to, worker_pids
from voicebot.bench.fixtures import speech_track, write_track
from voicebot.bench.stats import LATE_MS, frame_stats, highest_passing_step
from voicebot.bench.timing import TimedSessions, read_ticks

TARGET_CALLS = 150
DEFAULT_STEPS = (10, 25, 50, 100, 150)


@dataclass(frozen=True)
class CapacityOptions:
    workdir: Path
    steps: tuple[int, ...] = DEFAULT_STEPS
    step_s: float = 10.0
    warmup_s: float = 3.0
    floor: bool = True
    setup_timeout_s: float = 40.0
    # calls set up one after another over this long; run() makes it one loop of the customers' speech
    stagger_s: float = 0.0


def run(opts: CapacityOptions) -> dict:
    started_on = machine()  # before the benchmark loads the box: its load average is the neighbours'
    workdir = opts.workdir
    track = speech_track()
    write_track(track, workdir, "speech")  # speech.ulaw: what every sipp customer streams
    # Set up all at once, every customer would speak the same word at the same moment and every
    # recogniser would finish an utterance in the same tick: a load spike no campaign makes (its
    # calls start calls_per_second apart). Spread over one loop of the track, each call is at its
    # own point of the conversation, as in a running campaign.
    opts = replace(opts, stagger_s=track.duration_ms / 1000)
    bot = prepared_bot(workdir)
    steps, skipped = [], []
    for n in sorted(opts.steps):
        # past a failing step only the target's own step still tells something (and it bounds the run)
        if any(not s["meets_target"] for s in steps) and n != TARGET_CALLS:
            skipped.append(n)
            continue
        step = _bot_step(n, bot, opts)
        step["meets_target"] = step["frames"]["meets"]
        steps.append(step)
    floors = {s["calls"]: _floor_step(s["calls"], opts) for s in steps} if opts.floor else {}
    for step in steps:
        floor = floors.get(step["calls"])
        if floor and floor.get("uac_cpu_pct_per_call") and step["cpu"]["bot_pct_per_call"] is not None:
            step["cpu"]["ratio_to_sipp_floor"] = round(step["cpu"]["bot_pct_per_call"] / floor["uac_cpu_pct_per_call"], 1)
    best = highest_passing_step(steps)
    at_target = next((s for s in steps if s["calls"] == TARGET_CALLS), None)
    mem_max = max((s["memory_per_worker"].get("private_mb", {}).get("max", 0) for s in steps), default=None)
    result = {
        "benchmark": "capacity",
        "machine": started_on,
        "method": {
            "customers": "sipp UAS (uas_speak.xml) streaming espeak-ng speech with 2.2 s pauses (8 kHz μ-law, looped)",
            "bot": "WorkerPool of forked media workers (K calls each) running BotSessions on voicebot/bench/data/bench_en.yaml "
            "(webrtcvad, barge-in, PocketSphinx with per-node grammar, espeak prompts pre-rendered)",
            "frame_interval": "gap between consecutive media-clock requests for a call's outbound frame (MediaPort.onFrameRequested "
            "→ session.next_outbound), pooled over calls in the window",
            "late_frame": f"an interval above {LATE_MS:g} ms (1.5 frames)",
            "window_s": opts.step_s,
            "warmup_s": opts.warmup_s,
            "set_up": f"calls dialled evenly over {opts.stagger_s:g} s (one loop of the customers' speech), so they are "
            "at different points of their conversations, as paced campaign calls are",
            "cpu_pct": "percent of one core (100 = one core busy); bot = media workers + model host",
        },
        "steps": steps,
        "steps_skipped": {"calls": skipped, "why": "a lower step already failed"} if skipped else [],
        "sipp_floor": list(floors.values()) if floors else {"skipped": "--no-floor"},
        "capacity_calls": best,
        "summary": f"{best if best is not None else 'no'} concurrent calls within the frame-interval target (steps {', '.join(str(n) for n in opts.steps)})",
        "targets": {
            "concurrent_calls": target(
                f"≥ {TARGET_CALLS} calls with p99 frame interval ≤ {LATE_MS:g} ms and < 0.1 % late frames",
                best,
                _calls_verdict(best, at_target),
                "" if at_target is not None or (best is not None and best >= TARGET_CALLS) else f"no step of {TARGET_CALLS} calls was run",
            ),
            "memory_per_worker": target(
                "≤ 60 MB private memory per worker beyond shared model pages", mem_max, None if mem_max is None else mem_max <= 60
            ),
            "cpu_per_call_speaking": target(
                "≤ 0.5 % of a core per call while the bot speaks, no ASR decoding",
                None,
                None,
                "not isolated: these steps run recognition too (see bot_pct_per_call)",
            ),
        },
    }
    return result


def _calls_verdict(best: int | None, at_target: dict | None) -> bool | None:
    if best is not None and best >= TARGET_CALLS:
        return True
    return False if at_target is not None else None  # never judged without running the target's step


def _bot_step(n: int, bot, opts: CapacityOptions) -> dict:  # noqa: ANN001
    from voicebot.telephony.pool import WorkerPool
    from voicebot.telephony.worker import WorkerSettings

    ticks_dir = opts.workdir / f"ticks-{n}"
    ticks_dir.mkdir(parents=True, exist_ok=True)
    uas = Sipp("uas_speak", opts.workdir, args=["-d", "3600000"], rtp_ports=4 * n + 8).start()
    pool = None
    try:
        started = time.monotonic()
        settings = WorkerSettings(trunk_to(uas.port), TimedSessions(bot, ticks_dir), ring_timeout_s=10, max_call_duration_s=3600)
        pool = WorkerPool(settings, concurrency=n, setups_per_second_per_worker=20.0)
        pool_start_s = time.monotonic() - started
        watch = PoolWatch(pool)
        ids = [f"cap{n}-{i}" for i in range(n)]
        for attempt in ids:
            pool.dial(attempt, "customer")
            watch.drain(time.monotonic() + opts.stagger_s / n)
        set_up = watch.until(lambda: len(watch.answered) + len(watch.dial_failed) + len(watch.ended) >= n, opts.setup_timeout_s)
        setup_s = time.monotonic() - started - pool_start_s
        watch.drain(time.monotonic() + opts.warmup_s)
        workers = worker_pids(pool)
        pids = workers + [p for p in [host_pid(pool)] if p]
        me, customer = os.getpid(), uas.pid
        cpu0, sys0 = procstat.cpu_seconds([*pids, me, customer]), procstat.system_busy()
        t0 = time.monotonic()
        watch.drain(t0 + opts.step_s)
        t1 = time.monotonic()
        cpu1, sys1 = procstat.cpu_seconds([*pids, me, customer]), procstat.system_busy()
        memory = procstat.memory_summary(worker_pids(pool))
        up = len([a for a in watch.answered if a not in watch.ended])
        for attempt in ids:
            pool.hangup(attempt)
        watch.until(lambda: len(watch.ended) + len(watch.dial_failed) >= n, 30.0)
        codes = pool.close(timeout_s=15)
        pool = None
    finally:
        if pool is not None:
            pool.close(timeout_s=10)
        uas.stop()
    window = t1 - t0
    bot_cpu = procstat.cpu_used({p: cpu0[p] for p in pids if p in cpu0}, cpu1)
    frames = frame_stats(read_ticks(ticks_dir).values(), t0, t1)
    pct = lambda s: round(100.0 * s / window, 2)  # noqa: E731
    busy = procstat.busy_fraction(sys0, sys1)
    step = {
        "calls": n,
        "workers": len(workers),
        "answered": len(watch.answered),
        "set_up_in_time": set_up,
        "calls_up_during_window": up,
        "failed": {
            "dial_failed": len(watch.dial_failed),
            "ended_before_hangup": sum(1 for e in watch.ended.values() if e.outcome != "answered"),
            "worker_lost": watch.worker_lost,
            "worker_exit_codes_nonzero": sum(1 for c in codes.values() if c not in (0, None)),
        },
        "pool_start_s": round(pool_start_s, 2),
        "setup_s": round(setup_s, 2),
        "frames": {**frames.as_dict(), "meets": frames.meets()},
        "cpu": {
            "bot_pct": pct(bot_cpu),
            "bot_pct_per_call": round(pct(bot_cpu) / up, 3) if up else None,
            "manager_pct": pct(cpu1.get(me, 0) - cpu0.get(me, 0)),
            "customer_sipp_pct": pct(cpu1.get(customer, 0) - cpu0.get(customer, 0)),
            "system_busy_pct_of_all_cores": None if busy is None else round(100 * busy, 1),
        },
        "memory_per_worker": memory,
    }
    print(
        f"  capacity {n} calls: p99 {frames.p99_ms} ms, late {frames.late_pct and round(frames.late_pct, 3)} %, "
        f"bot CPU {step['cpu']['bot_pct']} %, up {up}",
        file=sys.stderr,
    )
    return step


def _floor_step(n: int, opts: CapacityOptions) -> dict:
    """sipp calls sipp: N calls, both sides streaming speech.ulaw; the UAC's CPU is the floor."""
    folder = opts.workdir / f"floor-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "speech.ulaw").write_bytes((opts.workdir / "speech.ulaw").read_bytes())
    rate = 50
    uas = Sipp("uas_speak", folder, args=["-d", "3600000"], rtp_ports=4 * n + 8).start()
    uac = None
    try:
        uac = Sipp(
            "uac_speak",
            folder,
            args=["-m", str(n), "-l", str(n), "-r", str(rate), "-trace_stat", "-fd", "1"],
            remote=f"127.0.0.1:{uas.port}",
            rtp_ports=4 * n + 8,
        ).start()
        time.sleep(n / rate + 1.0 + opts.warmup_s)
        cpu0 = procstat.cpu_seconds([uac.pid, uas.pid])
        t0 = time.monotonic()
        time.sleep(opts.step_s)
        cpu1 = procstat.cpu_seconds([uac.pid, uas.pid])
        window = time.monotonic() - t0
        up = _sipp_current_calls(folder)
    finally:
        if uac is not None:
            uac.stop()
        uas.stop()
    uac_pct = 100.0 * (cpu1.get(uac.pid, 0) - cpu0.get(uac.pid, 0)) / window
    uas_pct = 100.0 * (cpu1.get(uas.pid, 0) - cpu0.get(uas.pid, 0)) / window
    calls = up if up else n
    return {
        "calls": n,
        "calls_up": up,
        "uac_cpu_pct": round(uac_pct, 2),
        "uas_cpu_pct": round(uas_pct, 2),
        "uac_cpu_pct_per_call": round(uac_pct / calls, 4) if calls else None,
    }


def _sipp_current_calls(folder: Path) -> int | None:
    """CurrentCall from the last row of the UAC's statistics CSV."""
    for path in folder.glob("uac_speak_*_.csv"):
        with path.open(newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        if len(rows) >= 2 and "CurrentCall" in rows[0]:
            try:
                return int(rows[-1][rows[0].index("CurrentCall")])
            except (ValueError, IndexError):
                return None
    return None
