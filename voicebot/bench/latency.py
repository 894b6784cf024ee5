"""Turn latency: from the end-of-speech decision to the reply's first frame on the wire.

Calls run the bench dialplan against sipp customers who speak short answers
with pauses (so every answer is a turn the bot replies to). Each turn is timed
on the wall clock by ``timing.TimedSession``: from the start of the session
call that decided the turn was over to the first frame of the reply handed to
the conference bridge, which sends it in that 20 ms tick. (The session's own
``decision_to_bot_audio_ms`` stamps both ends with media time, so it reads 0
whenever the reply is queued within the same frame; it is not a wire number.)
Voice to voice adds the endpointing silence the session waited (the caller's
last voiced frame to the decision, on the media clock).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from voicebot.bench.common import PoolWatch, Sipp, machine, prepared_bot, target, trunk_to
from voicebot.bench.fixtures import speech_track, write_track
from voicebot.bench.stats import summary
from voicebot.bench.timing import TimedSessions, read_turns

TURNS_PER_CALL_S = 0.25  # the customer's track: 4 answers per 14.4 s
TARGET_P95_MS = 100
TARGET_V2V_P50_MS = 450


@dataclass(frozen=True)
class LatencyOptions:
    workdir: Path
    turns: int = 100
    max_s: float = 120.0
    calls: int | None = None


def run(opts: LatencyOptions) -> dict:
    started_on = machine()  # before the benchmark loads the box: its load average is the neighbours'
    from voicebot.telephony.pool import WorkerPool
    from voicebot.telephony.worker import WorkerSettings

    calls = opts.calls or min(12, max(2, math.ceil(opts.turns / 10)))
    talk_s = min(opts.max_s, opts.turns / (calls * TURNS_PER_CALL_S) * 1.15 + 4.0)
    write_track(speech_track(), opts.workdir, "speech")
    records = opts.workdir / "timed"
    records.mkdir(parents=True, exist_ok=True)
    bot = TimedSessions(prepared_bot(opts.workdir), records)
    uas = Sipp("uas_speak", opts.workdir, args=["-d", "3600000"], rtp_ports=4 * calls + 8).start()
    pool = None
    ids = [f"lat-{i}" for i in range(calls)]
    try:
        pool = WorkerPool(WorkerSettings(trunk_to(uas.port), bot, ring_timeout_s=10, max_call_duration_s=3600), concurrency=calls)
        watch = PoolWatch(pool)
        for attempt in ids:
            pool.dial(attempt, "customer")
        watch.drain(time.monotonic() + talk_s)
        for attempt in ids:
            pool.hangup(attempt)
        watch.until(lambda: len(watch.ended) + len(watch.dial_failed) >= calls, 30.0)
        pool.close(timeout_s=15)
        pool = None
    finally:
        if pool is not None:
            pool.close(timeout_s=10)
        uas.stop()
    turns = read_turns(records)
    decision = [t["decision_to_first_frame_ms"] for t in turns]
    v2v = [t["voice_to_voice_ms"] for t in turns]
    lat, vv = summary(decision, (50, 95, 99)), summary(v2v, (50, 95))
    enough = len(decision) >= opts.turns
    short = "" if enough else f"only {len(decision)} turns measured (asked for {opts.turns})"
    return {
        "benchmark": "latency",
        "machine": started_on,
        "method": {
            "calls": calls,
            "talk_s": round(talk_s, 1),
            "customers": "sipp UAS streaming espeak-ng answers with 2.2 s pauses",
            "measured_by": "wall clock in the worker: the session call that decided end of turn → first reply frame handed to the bridge",
        },
        "answered": len(watch.answered),
        "turns": len(decision),
        "endpointing_ms": summary([float(t["endpointing_ms"]) for t in turns], (50, 95)),
        "decision_to_first_bot_frame_ms": lat,
        "end_of_speech_to_first_bot_frame_ms": vv,
        "summary": f"turn latency p50 {lat['p50']} / p95 {lat['p95']} / p99 {lat['p99']} ms over {len(decision)} turns; voice to voice p50 {vv['p50']} ms",
        "targets": {
            "turn_latency_p95": target(
                f"p95 ≤ {TARGET_P95_MS} ms over ≥ {opts.turns} turns", lat["p95"], _verdict(lat["p95"], TARGET_P95_MS, enough), short
            ),
            "voice_to_voice_p50": target(
                f"p50 ≤ {TARGET_V2V_P50_MS} ms (caller's last voiced frame → first bot frame, endpointing included)",
                vv["p50"],
                _verdict(vv["p50"], TARGET_V2V_P50_MS, enough),
                short,
            ),
        },
    }


def _verdict(value: float | None, limit: float, enough: bool) -> bool | None:
    if value is None:
        return None
    if value > limit:
        return False
    return True if enough else None
