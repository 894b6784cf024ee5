"""Barge-in: how long the bot keeps talking after the caller starts, heard at the caller's end.

Each trial is one call to a baresip customer (auto-answer, recording what it
sends and what it hears) who talks over the bot's long greeting, starting at a
different moment in each call. From the customer's recording: the onset is
the first loud sample of what it sent; the bot is silent from the first moment
after the onset where what it hears stays below the silence level for
``QUIET_MS``. The delay is the difference. The session's own view (onset →
pause, media clock) is reported beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from voicebot.audio.frames import NARROWBAND, read_wav, write_wav
from voicebot.bench.common import PoolWatch, machine, prepared_bot, target, trunk_to
from voicebot.bench.stats import summary

BARGEIN_DIALPLAN = Path(str(resources.files("voicebot.bench") / "data" / "bargein_en.yaml"))
TARGET_P95_MS = 150
QUIET_MS = 300  # longer than any gap between the greeting's words
LOUD = 1000  # onset: the first sample above this
QUIET_DBFS = -45.0  # bot silent: 10 ms windows below this (line noise and codec hiss stay under it)
WORDS = "wait, how much does it cost"
STAGGER_S = 1.1


@dataclass(frozen=True)
class BargeinOptions:
    workdir: Path
    trials: int = 20
    max_s: float = 120.0
    batch: int = 5


def onset_s(pcm: bytes, rate_hz: int = 8000, after_s: float = 0.0) -> float | None:
    x = np.abs(np.frombuffer(pcm, dtype="<i2")[int(after_s * rate_hz) :])
    loud = np.flatnonzero(x > LOUD)
    return after_s + float(loud[0]) / rate_hz if len(loud) else None


def silent_from_s(
    pcm: bytes, start_s: float, rate_hz: int = 8000, quiet_ms: int = QUIET_MS, level_dbfs: float = QUIET_DBFS
) -> float | None:
    """The first time ≥ ``start_s`` from which ``quiet_ms`` of ``pcm`` stay below ``level_dbfs`` (10 ms windows)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    win = rate_hz // 100
    n = len(x) // win
    if n == 0:
        return None
    rms = np.sqrt(np.mean(x[: n * win].reshape(n, win) ** 2, axis=1)) / 32768.0
    quiet = 20 * np.log10(np.maximum(rms, 1e-9)) < level_dbfs
    need = quiet_ms // 10
    first = int(start_s * 100)
    run = 0
    for i in range(first, n):
        run = run + 1 if quiet[i] else 0
        if run >= need:
            return (i - need + 1) / 100
    return None


def run(opts: BargeinOptions) -> dict:
    started_on = machine()  # before the benchmark loads the box: its load average is the neighbours'
    import shutil

    if shutil.which("baresip") is None:
        return {
            "benchmark": "bargein",
            "machine": started_on,
            "skipped": "baresip is not installed (make setup installs baresip-core)",
            "targets": {"bargein_p95": target(f"p95 ≤ {TARGET_P95_MS} ms", None, None, "not measured: no baresip")},
        }
    from voicebot.peers.baresip import Account, BaresipPeer
    from voicebot.peers.customer import speak
    from voicebot.telephony.pool import WorkerPool
    from voicebot.telephony.worker import WorkerSettings

    words = b"".join(speak(WORDS, NARROWBAND, seed=7))
    delays, session_delays, misses = [], [], 0
    records = opts.workdir / "calls"
    bot = prepared_bot(opts.workdir, BARGEIN_DIALPLAN, calls_dir=records)
    deadline = time.monotonic() + opts.max_s
    done = 0
    batch_no = 0
    while done < opts.trials and time.monotonic() < deadline:
        n = min(opts.batch, opts.trials - done)
        folder = opts.workdir / f"batch-{batch_no}"
        folder.mkdir(parents=True, exist_ok=True)
        accounts = []
        for k in range(n):
            lead_s = 2.0 + 0.137 * (done + k)  # spread over the greeting and over frame phases
            wav = folder / f"c{k}.wav"
            write_wav(wav, NARROWBAND.silence(int(lead_s * 1000)) + words + NARROWBAND.silence(12000), NARROWBAND.rate_hz)
            accounts.append(Account(f"c{k}", wav))
        peer = BaresipPeer("customers", folder, accounts[0].play, accounts=tuple(accounts))
        peer.start()
        pool = None
        try:
            pool = WorkerPool(WorkerSettings(trunk_to(peer.sip_port), bot, ring_timeout_s=10, max_call_duration_s=60), concurrency=n)
            watch = PoolWatch(pool)
            ids = [f"b{batch_no}-{k}" for k in range(n)]
            for k, attempt in enumerate(ids):
                pool.dial(attempt, f"c{k}")
                # baresip names a recording by the second its call started: one call a second keeps them apart
                watch.drain(time.monotonic() + STAGGER_S)
            watch.drain(time.monotonic() + 2.0 + 0.137 * (done + n) + 3.5)  # past every onset, pause and the words
            for attempt in ids:
                pool.hangup(attempt)
            watch.until(lambda watch=watch, n=n: len(watch.ended) + len(watch.dial_failed) >= n, 20.0)
            pool.close(timeout_s=15)
            pool = None
            peer.wait_idle(10.0)
        finally:
            if pool is not None:
                pool.close(timeout_s=10)
            peer.stop()
        for rec in peer.recordings():
            sent, _ = read_wav(rec.sent)
            heard, _ = read_wav(rec.heard)
            t_on = onset_s(sent, after_s=1.0)
            t_quiet = silent_from_s(heard, t_on) if t_on is not None else None
            if t_on is None or t_quiet is None:
                misses += 1
                continue
            delays.append(round(float(t_quiet - t_on) * 1000.0, 1))
        for attempt in ids:
            path = records / f"{attempt}.json"
            if path.is_file():
                pauses = [i for i in json.loads(path.read_text())["interruptions"] if i["kind"] == "pause" and i["onset_ms"] is not None]
                if pauses:
                    session_delays.append(float(pauses[0]["ts_ms"] - pauses[0]["onset_ms"]))
        done += n
        batch_no += 1
    s = summary(delays, (50, 95))
    enough = len(delays) >= min(opts.trials, 10)
    return {
        "benchmark": "bargein",
        "machine": machine(),
        "method": {
            "customer": "baresip (auto-answer, sndfile recording), saying '" + WORDS + "' 2.0-4.7 s into a 12 s greeting",
            "onset": f"first sample above {LOUD} in what the customer sent",
            "bot_silent": f"first point after the onset where what the customer heard stays below {QUIET_DBFS:g} dBFS for {QUIET_MS} ms",
            "batch": opts.batch,
        },
        "trials": done,
        "measured": len(delays),
        "unmeasurable": misses,
        "onset_to_bot_silence_ms": s,
        "session_onset_to_pause_ms": summary(session_delays, (50, 95)),
        "delays_ms": delays,
        "summary": f"bot silent p50 {s['p50']} / p95 {s['p95']} ms after the caller starts ({len(delays)} calls)",
        "targets": {
            "bargein_p95": target(
                f"p95 ≤ {TARGET_P95_MS} ms, measured on the callee's recording",
                s["p95"],
                None if s["p95"] is None else (s["p95"] <= TARGET_P95_MS if enough or s["p95"] > TARGET_P95_MS else None),
            ),
        },
    }
