"""`voicebot bench`: the pure parts (percentiles, frame intervals, step choice, /proc parsing,
μ-law) and one short real run. Speed is what the benchmarks measure, never what a test asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from array import array
from pathlib import Path

import numpy as np
import pytest

from voicebot.bench import procstat
from voicebot.bench.bargein import onset_s, silent_from_s
from voicebot.bench.fixtures import ulaw_decode, ulaw_encode
from voicebot.bench.stats import FrameStats, frame_stats, highest_passing_step, intervals_ms, late_frames, percentile, summary
from voicebot.bench.timing import read_ticks

ROOT = Path(__file__).parent.parent


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 95) == 95
    assert percentile([3, 1, 2], 100) == 3
    with pytest.raises(ValueError):
        percentile([1], 101)
    assert summary([10.0, 20.0, 30.0], (50,)) == {"n": 3, "p50": 20.0, "max": 30.0}
    assert summary([], (50, 95)) == {"n": 0, "p50": None, "p95": None, "max": None}


def test_frame_intervals_are_taken_inside_the_window_and_late_means_over_30_ms() -> None:
    ticks = [0.0, 0.02, 0.04, 0.075, 0.095, 0.2]
    assert intervals_ms(ticks) == pytest.approx([20, 20, 35, 20, 105])
    assert intervals_ms(ticks, 0.05, 0.1) == pytest.approx([35, 20])  # by the later tick of each pair
    assert late_frames([20, 30, 30.1, 41]) == 2
    stats = frame_stats([ticks, [0.0, 0.02]], 0.0, 1.0)
    assert (stats.calls, stats.frames, stats.late) == (2, 6, 2)
    assert stats.late_pct == pytest.approx(100 * 2 / 6)
    assert not stats.meets()
    steady = frame_stats([[i * 0.02 for i in range(2000)]], 0.0, 100.0)
    assert steady.meets() and steady.p99_ms == pytest.approx(20.0)
    assert not FrameStats(0, 0, None, None, None, 0).meets()  # no frames is no evidence


def test_the_capacity_is_the_last_passing_step_before_any_failure() -> None:
    steps = [
        {"calls": 25, "meets_target": True},
        {"calls": 100, "meets_target": False},
        {"calls": 50, "meets_target": True},
        {"calls": 150, "meets_target": True},
    ]
    assert highest_passing_step(steps) == 50  # 150 passing after 100 failed is luck, not capacity
    assert highest_passing_step([{"calls": 25, "meets_target": False}]) is None
    assert highest_passing_step([]) is None


def test_proc_stat_and_smaps_rollup_are_parsed() -> None:
    # a command name with spaces and parentheses must not shift the fields
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 8 + ["1000"] + ["0"] * 20
    stat = "1234 (my (odd) name) " + " ".join(fields)
    cpu_s, rss = procstat.parse_stat(stat)
    assert cpu_s == pytest.approx(300 / procstat.CLK_TCK)
    assert rss == 1000 * procstat.PAGE_BYTES
    rollup = "00400000-7ffd [rollup]\nRss:  2048 kB\nPss:  1024 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 412 kB\n"
    assert procstat.parse_smaps_rollup(rollup) == {"rss_bytes": 2048 * 1024, "pss_bytes": 1024 * 1024, "private_bytes": 512 * 1024}
    busy, total = procstat.parse_system_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert (busy, total) == (150.0, 1000.0)
    assert procstat.busy_fraction((150.0, 1000.0), (250.0, 1200.0)) == pytest.approx(0.5)
    me = procstat.sample(os.getpid())
    assert me is not None and me.cpu_s > 0 and me.rss_bytes > 0
    assert procstat.memory_summary([os.getpid()])["processes"] == 1
    assert procstat.sample(2**22 + 12345) is None  # no such process


def test_ulaw_follows_g711() -> None:
    pcm = np.array([0, 1, -1, 100, -100, 1000, 32767, -32768, 8000], dtype="<i2").tobytes()
    encoded = ulaw_encode(pcm)
    assert encoded[:1] == b"\xff" and ulaw_encode(np.array([32767], dtype="<i2").tobytes()) == b"\x80"
    assert ulaw_encode(np.array([-32768], dtype="<i2").tobytes()) == b"\x00"
    back = np.frombuffer(ulaw_decode(encoded), dtype="<i2").astype(int)
    orig = np.frombuffer(pcm, dtype="<i2").astype(int)
    assert np.all(np.abs(back - orig) <= np.maximum(8, np.abs(orig) // 16))  # within one μ-law step


def test_barge_in_onset_and_silence_are_found_in_recordings() -> None:
    rate = 8000
    t = np.arange(rate) / rate
    voice = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    quiet = bytes(rate)  # 0.5 s
    sent = quiet + voice
    assert onset_s(sent) == pytest.approx(0.5, abs=0.001)
    heard = voice + voice[: rate // 5 * 2] + bytes(rate * 2)  # talks until 1.2 s, then silent
    assert silent_from_s(heard, 0.5) == pytest.approx(1.2, abs=0.011)
    assert silent_from_s(voice, 0.0) is None


def test_ticks_files_are_read_back(tmp_path: Path) -> None:
    (tmp_path / "a.ticks").write_bytes(array("d", [1.0, 1.02]).tobytes())
    assert {k: list(v) for k, v in read_ticks(tmp_path).items()} == {"a": [1.0, 1.02]}


def test_the_scenarios_and_dialplans_ship_in_the_package() -> None:
    from voicebot.bench.bargein import BARGEIN_DIALPLAN
    from voicebot.bench.common import BENCH_DIALPLAN, SCENARIOS
    from voicebot.dialplan import check_dialplan

    assert {p.name for p in SCENARIOS.glob("*.xml")} >= {"uas_speak.xml", "uac_speak.xml", "uas_answer_or_reject.xml"}
    for path in (BENCH_DIALPLAN, BARGEIN_DIALPLAN):
        loaded, problems = check_dialplan(path)
        assert loaded is not None and not [p for p in problems if p.severity == "error"], problems


def test_a_short_latency_run_prints_one_json_object(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "bench", "latency", "--turns", "2", "--json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["benchmark"] == "latency"
    assert {"cores", "cpu_model", "ram_gib", "kernel", "python", "pjsua2"} <= set(result["machine"])
    assert {"p50", "p95", "p99", "n"} <= set(result["decision_to_first_bot_frame_ms"])
    assert result["decision_to_first_bot_frame_ms"]["n"] == result["turns"]
    assert set(result["targets"]) == {"turn_latency_p95", "voice_to_voice_p50"}
    assert all({"target", "measured", "met"} <= set(v) for v in result["targets"].values())
    assert "latency:" in proc.stderr
