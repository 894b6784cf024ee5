"""CPU time and memory of processes, read from /proc (Linux only; no psutil)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    cpu_s: float  # user + system, since the process started
    rss_bytes: int


def parse_stat(text: str) -> tuple[float, int]:
    """(user+system CPU seconds, RSS bytes) from the text of /proc/PID/stat.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted from the last ')'.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # after the name: state is field 3, so field n is fields[n - 3]
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / CLK_TCK, rss_pages * PAGE_BYTES


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """Bytes of Rss, Pss and private (clean + dirty) memory from /proc/PID/smaps_rollup."""
    kb: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB":
            kb[key.strip()] = int(parts[0])
    return {
        "rss_bytes": kb.get("Rss", 0) * 1024,
        "pss_bytes": kb.get("Pss", 0) * 1024,
        "private_bytes": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024,
    }


def sample(pid: int) -> ProcSample | None:
    try:
        cpu_s, rss = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None  # gone
    return ProcSample(pid, cpu_s, rss)


def memory(pid: int) -> dict[str, int] | None:
    try:
        return parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except OSError:
        return None


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        s = sample(pid)
        if s is not None:
            out[pid] = s.cpu_s
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu_seconds`` readings by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def parse_system_stat(text: str) -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from the first line of /proc/stat."""
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return float(total - idle), float(total)


def system_busy() -> tuple[float, float]:
    return parse_system_stat(Path("/proc/stat").read_text())


def busy_fraction(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Share of all cores busy between two ``system_busy`` readings (0..1)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


def memory_summary(pids: Iterable[int]) -> dict:
    """RSS, PSS and private memory per process (MB): mean and max over ``pids``."""
    mems = [m for m in (memory(pid) for pid in pids) if m is not None]
    if not mems:
        return {"processes": 0}
    mb = 1024 * 1024

    def stat(key: str) -> dict:
        vals = [m[key] / mb for m in mems]
        return {"mean": round(sum(vals) / len(vals), 1), "max": round(max(vals), 1)}

    return {"processes": len(mems), "rss_mb": stat("rss_bytes"), "pss_mb": stat("pss_bytes"), "private_mb": stat("private_bytes")}
