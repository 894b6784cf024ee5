"""`voicebot bench campaign`: a mass campaign at 10k, 100k and 1M contacts, dialled against a busy sipp UAS.

For each size the real `voicebot run` is started as a user starts it (a subprocess: the campaign
manager), on synthetic contacts (``bench/contacts.py``) and ``data/campaign_bench.yaml`` (40 attempts/s,
busy is final, a 16 MB prompt cache). Measured from outside:

- the import: its rows per second and seconds (from the run's JSON-lines log);
- the first INVITE (sipp's message trace): seconds after the start and after the import finished;
- the manager's RSS (peak, /proc) and CPU per 1,000 attempts and as a share of one core, over a
  window of ``duration_s`` that starts ``settle_s`` after the first INVITE;
- attempts per second over that window (from the store, read-only);
- store bytes per contact (the file after the import);
- the prompt cache's bytes on disk (peak, sampled) against its budget.

Only the manager process is measured: media workers, the model host, the prompt renderers and
mosquitto are its children, and their cost is the capacity benchmark's business.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from voicebot.bench import procstat
from voicebot.bench.common import BenchError, Sipp, machine, target
from voicebot.bench.contacts import write_synthetic_contacts

DIALPLAN = Path(str(resources.files("voicebot.bench") / "data" / "campaign_bench.yaml"))
_SAMPLE_S = 0.2


@dataclass(frozen=True)
class CampaignOptions:
    workdir: Path
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    duration_s: float = 60.0  # the measured window of dialling
    settle_s: float = 5.0  # after the first INVITE, before the window
    import_timeout_s: float = 600.0  # a bound on each size's import and first call


def run(options: CampaignOptions) -> dict:
    sizes = [_one(options, n) for n in options.sizes]
    largest = max(sizes, key=lambda s: s["contacts"])
    budget = largest["prompt_cache"]["budget_bytes"]
    targets = {
        "import": target("≤ 60 s for 1,000,000 contacts", largest["import_s"], _at_million(largest, largest["import_s"] <= 60)),
        "first_invite": target(
            "≤ 10 s after the import finishes",
            largest["first_invite_after_import_s"],
            _at_million(largest, largest["first_invite_after_import_s"] <= 10),
        ),
        "manager_rss": target("≤ 500 MB", largest["manager_rss_peak_mb"], _at_million(largest, largest["manager_rss_peak_mb"] <= 500)),
        "dial_rate": target(
            "40 attempts/s for 60 s with the manager under 30 % of one core",
            {"attempts_per_s": largest["attempts_per_s"], "manager_cpu_pct": largest["manager_cpu_pct_of_core"]},
            _at_million(
                largest,
                largest["attempts_per_s"] >= 39.5 and largest["manager_cpu_pct_of_core"] < 30 and options.duration_s >= 60,
            ),
        ),
        "prompt_cache": target(
            "never above its budget",
            {"peak_bytes": max(s["prompt_cache"]["peak_on_disk_bytes"] for s in sizes), "budget_bytes": budget},
            all(s["prompt_cache"]["peak_on_disk_bytes"] <= s["prompt_cache"]["budget_bytes"] for s in sizes),
        ),
    }
    summary = "; ".join(
        f"{s['contacts']:,}: import {s['import_s']} s, first INVITE +{s['first_invite_after_import_s']} s, "
        f"{s['attempts_per_s']}/s, manager {s['manager_cpu_pct_of_core']} % CPU, {s['manager_rss_peak_mb']} MB"
        for s in sizes
    )
    return {"benchmark": "campaign", "machine": machine(), "sizes": sizes, "targets": targets, "summary": summary}


def _at_million(result: dict, met: bool) -> bool | None:
    return met if result["contacts"] >= 1_000_000 else None  # the target is stated at 1M


def _one(options: CampaignOptions, contacts: int) -> dict:
    work = options.workdir / f"n{contacts}"
    work.mkdir(parents=True, exist_ok=True)
    csv_path = options.workdir / f"contacts-{contacts}.csv"
    if not csv_path.exists():
        write_synthetic_contacts(csv_path, contacts)
    for stale in work.glob("campaign*"):
        _remove(stale)
    trace = work / "invites.log"
    trace.unlink(missing_ok=True)
    cps = 40
    budget_s = options.settle_s + options.duration_s + 60
    sipp = Sipp("uas_busy", work, ["-m", str(int(cps * budget_s * 2)), "-trace_msg", "-message_file", str(trace)]).start()
    dialplan = work / "campaign.yaml"
    dialplan.write_text(DIALPLAN.read_text().replace("127.0.0.1:5999", f"127.0.0.1:{sipp.port}"))
    db = work / "campaign.db"
    log = db.with_suffix(".log")
    cmd = [sys.executable, "-m", "voicebot.cli", "run", str(dialplan), "--contacts", str(csv_path), "--db", str(db)]
    started = time.monotonic()
    started_wall = time.time()
    proc = subprocess.Popen(
        cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    watch = _Watch(proc.pid, work / "campaign.prompts")
    try:
        first_invite = None
        imported: dict | None = None
        store_bytes = 0
        while first_invite is None:
            if time.monotonic() - started > options.import_timeout_s:
                raise BenchError(f"{contacts} contacts: no INVITE within {options.import_timeout_s:.0f} s")
            if proc.poll() is not None:
                raise BenchError(f"the run ended ({proc.returncode}) before dialling: {proc.stderr.read().decode()[-1500:]}")  # type: ignore[union-attr]
            watch.sample()
            if imported is None:
                imported = _logged(log, "import_finished")
                if imported is not None:
                    store_bytes = sum(p.stat().st_size for p in work.glob("campaign.db*"))
            if trace.exists() and trace.stat().st_size and b"INVITE sip:" in trace.read_bytes()[:65536]:
                first_invite = time.monotonic()
            time.sleep(_SAMPLE_S / 4)
        imported = imported or _logged(log, "import_finished") or {}
        settle_until = first_invite + options.settle_s
        while time.monotonic() < settle_until:
            watch.sample()
            time.sleep(_SAMPLE_S)
        cpu0, attempts0, t0 = watch.cpu_s(), _attempts(db), time.monotonic()
        while time.monotonic() - t0 < options.duration_s and proc.poll() is None:
            watch.sample()
            time.sleep(_SAMPLE_S)
        cpu1, attempts1, t1 = watch.cpu_s(), _attempts(db), time.monotonic()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # the run we started: it ends its calls and exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own process group (start_new_session): only what it started
            proc.wait(timeout=10)
        sipp.stop()
    attempts = attempts1 - attempts0
    window_s = t1 - t0
    import_finished_at = _log_time(imported, started_wall) if imported else None
    prompts = _last_prompts(log)
    return {
        "contacts": contacts,
        "import_s": imported.get("seconds"),
        "import_rows_per_s": imported.get("rows_per_s"),
        "first_invite_after_start_s": round(first_invite - started, 2),
        "first_invite_after_import_s": round(first_invite - started - import_finished_at, 2) if import_finished_at is not None else None,
        "window_s": round(window_s, 1),
        "attempts": attempts,
        "attempts_per_s": round(attempts / window_s, 1) if window_s > 0 else 0.0,
        "manager_cpu_pct_of_core": round(100 * (cpu1 - cpu0) / window_s, 1) if window_s > 0 else None,
        "manager_cpu_s_per_1000_attempts": round(1000 * (cpu1 - cpu0) / attempts, 2) if attempts else None,
        "manager_rss_peak_mb": round(watch.rss_peak / 1e6, 1),
        "store_bytes_per_contact": round(store_bytes / contacts) if store_bytes else None,
        "prompt_cache": {
            "budget_bytes": prompts.get("budget_bytes"),
            "peak_on_disk_bytes": watch.cache_peak,
            "peak_ledger_bytes": prompts.get("peak_bytes"),
            "rendered": prompts.get("rendered"),
            "evicted": prompts.get("evicted"),
            "dialled_before_ready": prompts.get("dialled_unready"),
        },
    }


class _Watch:
    """The manager's CPU and RSS, and the prompt cache's bytes on disk, sampled."""

    def __init__(self, pid: int, prompts: Path) -> None:
        self.pid = pid
        self.prompts = prompts
        self.rss_peak = 0
        self.cache_peak = 0
        self._cpu = 0.0
        self._cache_at = 0.0

    def sample(self) -> None:
        s = procstat.sample(self.pid)
        if s is not None:
            self._cpu = s.cpu_s
            self.rss_peak = max(self.rss_peak, s.rss_bytes)
        if time.monotonic() - self._cache_at >= 1.0:  # a directory walk: once a second is enough
            self._cache_at = time.monotonic()
            self.cache_peak = max(self.cache_peak, _dir_bytes(self.prompts))

    def cpu_s(self) -> float:
        self.sample()
        return self._cpu


def _dir_bytes(path: Path) -> int:
    total = 0
    for f in path.glob("*/*.pcm"):
        try:
            total += f.stat().st_size
        except FileNotFoundError:
            pass  # evicted while we looked
    return total


def _attempts(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        return int(c.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])


def _logged(log: Path, event: str) -> dict | None:
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            entry = json.loads(line)
            if entry.get("event") == event:
                return entry
    return None


def _last_prompts(log: Path) -> dict:
    last: dict = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if '"progress"' in line:
                last = json.loads(line).get("prompts") or last
    return last


def _log_time(entry: dict, started_wall: float) -> float | None:
    """Seconds from the run's start to a log entry (its ISO timestamp)."""
    stamp = entry.get("timestamp")
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - started_wall


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    else:
        path.unlink()
