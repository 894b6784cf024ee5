"""`voicebot bench NAME [--json]`: run one benchmark (or all) and print one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

BENCHMARKS = ("capacity", "cps", "latency", "bargein", "asr", "understanding", "campaign")


def register_cli(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="measure the performance targets on this machine (127.0.0.1, bounded time)")
    b.add_argument("name", choices=[*BENCHMARKS, "all"])
    b.add_argument("--json", action="store_true", help="print one JSON object on stdout (a short summary goes to stderr)")
    b.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="cps, campaign: seconds of dialling measured (60); latency/bargein: a bound on the calls' time",
    )
    b.add_argument("--steps", type=_ints, default=None, metavar="N,N,...", help="capacity: concurrent calls per step (10,25,50,100,150)")
    b.add_argument("--step-seconds", type=float, default=None, metavar="S", help="capacity: measurement window per step (10)")
    b.add_argument("--no-floor", action="store_true", help="capacity: skip the sipp-to-sipp floor")
    b.add_argument("--rate", type=float, default=None, help="cps: attempts per second offered (40)")
    b.add_argument("--sizes", type=_ints, default=None, metavar="N,N,...", help="campaign: contacts per run (10000,100000,1000000)")
    b.add_argument("--turns", type=int, default=None, help="latency: turns to measure (100)")
    b.add_argument("--trials", type=int, default=None, help="bargein: interruptions to measure (20)")
    b.add_argument(
        "--limit", type=_positive, default=None, metavar="N", help="understanding: N utterances, evenly spread over the file (all)"
    )
    b.add_argument("--snr", type=_floats, default=None, metavar="DB,DB,...", help="understanding: noise levels below the speech (20,15,10)")
    b.add_argument("--noises", type=_names, default=None, metavar="NAME,...", help="understanding: pink, babble or white (pink,babble)")
    b.add_argument(
        "--voices",
        type=_names,
        default=None,
        metavar="VOICE,...",
        help="understanding: espeak-ng voices or piper:NAME (piper:en_US-joe-medium,en-us,en-gb,en-us+f3)",
    )
    b.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="FILE",
        help="understanding: test utterances, a YAML list of {node, text, expect} (tests/data/understanding/en_test.yaml)",
    )
    b.add_argument("--dialplan", type=Path, default=None, metavar="FILE", help="understanding: the dialplan (dialplans/demo_en.yaml)")
    b.add_argument("--engine", default=None, metavar="NAME", help="understanding: ASR engine instead of the dialplan's (e.g. pocketsphinx)")
    b.add_argument("--workdir", type=Path, default=None, help="keep the benchmark's files here (default: a temporary directory)")
    b.set_defaults(func=cmd_bench)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': write whole numbers separated by commas, e.g. 25,50,100") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': at least one step, each at least 1 call")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}': a whole number, at least 1")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': write numbers separated by commas, e.g. 20,15,10") from None
    if not values:
        raise argparse.ArgumentTypeError(f"'{text}': at least one value")
    return values


def _names(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"'{text}': at least one name")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    names = BENCHMARKS if args.name == "all" else (args.name,)
    with tempfile.TemporaryDirectory(prefix="voicebot-bench-") as tmp:
        root = (args.workdir or Path(tmp)).resolve()  # sipp and the runs it measures work in other directories
        results = {}
        started = time.monotonic()
        for name in names:
            results[name] = _run_one(name, args, root / name)
            print(f"{name}: {_human(name, results[name])}", file=sys.stderr)
    out = (
        results[names[0]]
        if len(names) == 1
        else {
            "benchmark": "all",
            "seconds": round(time.monotonic() - started, 1),
            "results": results,
            "targets": {f"{n}.{k}": v for n, r in results.items() for k, v in r.get("targets", {}).items()},
        }
    )
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for name in names:
            print(f"{name}: {_human(name, results[name])}")
    return 0


def _run_one(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if name == "capacity":
        from voicebot.bench.capacity import CapacityOptions, run

        opts = CapacityOptions(workdir)
        if args.steps:
            opts = CapacityOptions(workdir, steps=args.steps)
        if args.step_seconds:
            opts = CapacityOptions(workdir, steps=opts.steps, step_s=args.step_seconds, warmup_s=min(3.0, args.step_seconds))
        if args.no_floor:
            opts = CapacityOptions(workdir, steps=opts.steps, step_s=opts.step_s, warmup_s=opts.warmup_s, floor=False)
        result = run(opts)
    elif name == "cps":
        from voicebot.bench.cps import CpsOptions, run

        result = run(CpsOptions(workdir, duration_s=args.duration or 60.0, rate=args.rate or 40.0))
    elif name == "latency":
        from voicebot.bench.latency import LatencyOptions, run

        result = run(LatencyOptions(workdir, turns=args.turns or 100, max_s=args.duration or 120.0))
    elif name == "bargein":
        from voicebot.bench.bargein import BargeinOptions, run

        result = run(BargeinOptions(workdir, trials=args.trials or 20, max_s=args.duration or 120.0))
    elif name == "understanding":
        from voicebot.bench.understanding import UnderstandingOptions, run

        opts = UnderstandingOptions(workdir, data=args.data, dialplan=args.dialplan, limit=args.limit, engine=args.engine)
        for option, value in (("snrs_db", args.snr), ("noises", args.noises), ("voices", args.voices)):
            if value:
                opts = replace(opts, **{option: value})
        result = run(opts)
    elif name == "campaign":
        from voicebot.bench.campaign import CampaignOptions, run

        opts_c = CampaignOptions(workdir, duration_s=args.duration or 60.0)
        if args.sizes:
            opts_c = replace(opts_c, sizes=args.sizes)
        result = run(opts_c)
    else:
        from voicebot.bench.asr import AsrOptions, run

        result = run(AsrOptions(workdir))
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _human(name: str, r: dict) -> str:
    if r.get("skipped"):
        return f"skipped: {r['skipped']}"
    met = ", ".join(
        f"{k} {'met' if v['met'] else 'not met' if v['met'] is False else 'not measured'}" for k, v in r.get("targets", {}).items()
    )
    return f"{r.get('summary', '')} ({met}) in {r.get('seconds')} s"
