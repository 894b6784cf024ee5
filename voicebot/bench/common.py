"""What every benchmark shares: sipp on 127.0.0.1, the bench bot's pool, the machine, the output."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from voicebot.errors import VoicebotError
from voicebot.processes import bindable, free_port

SCENARIOS = Path(str(resources.files("voicebot.bench") / "sipp"))
BENCH_DIALPLAN = Path(str(resources.files("voicebot.bench") / "data" / "bench_en.yaml"))


class BenchError(VoicebotError):
    code = "bench-failed"


def free_port_range(size: int, tries: int = 50) -> int:
    """The first of ``size`` consecutive UDP ports free right now (sipp takes RTP ports from a range)."""
    for _ in range(tries):
        base = free_port() & ~1
        if bindable((socket.SOCK_DGRAM, port) for port in range(base, base + size)):
            return base
    raise BenchError(f"no {size} consecutive free UDP ports on 127.0.0.1")


@dataclass
class Sipp:
    """One sipp process on 127.0.0.1, started in ``workdir`` (where scenarios find speech.ulaw)."""

    scenario: str
    workdir: Path
    args: Sequence[str] = ()
    remote: str | None = None  # host:port for a UAC
    rtp_ports: int = 0  # consecutive UDP ports to keep free above -mp for rtp_stream (2 per call)
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 5.0) -> Sipp:
        if shutil.which("sipp") is None:
            raise BenchError("sipp is not installed (Debian sip-tester; `make setup` installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        # rtp_stream takes each call's RTP port upwards from -mp: keep that range free
        media_port = free_port_range(self.rtp_ports) if self.rtp_ports else free_port()
        cmd = [
            "sipp",
            "-sf",
            str(SCENARIOS / f"{self.scenario}.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mp",
            str(media_port),
            "-nostdin",
            "-trace_err",
        ]
        cmd += list(self.args)
        if self.remote:
            cmd.append(self.remote)
        log = open(self.workdir / f"{self.scenario}-{self.port}.log", "wb")  # noqa: SIM115 - sipp owns it
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if self.remote is None:
            self._wait_bound(timeout_s)
        return self

    def _wait_bound(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"sipp {self.scenario} exited with {self.proc.returncode}: {self.log_tail()}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # taken: sipp is up
            time.sleep(0.05)
        raise BenchError(f"sipp {self.scenario} did not bind 127.0.0.1:{self.port} within {timeout_s} s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()  # by PID; sipp's rtp threads die with it
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.proc.returncode

    def log_tail(self, n: int = 5) -> str:
        try:
            text = "".join(p.read_text(errors="replace") for p in self.workdir.glob(f"{self.scenario}*errors.log"))
        except OSError:
            text = ""
        return " | ".join(text.strip().splitlines()[-n:])


def worker_pids(pool) -> list[int]:  # noqa: ANN001 - a WorkerPool
    return [pid for pid in pool.pids().values() if pid is not None]


def host_pid(pool) -> int | None:  # noqa: ANN001
    return pool.host.process.pid if pool.host is not None else None


def machine() -> dict:
    """The machine the numbers come from."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        pj = metadata.version("pjsua2-python")
    except metadata.PackageNotFoundError:
        pj = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "pjsua2": pj,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def target(goal: str, measured: object, met: bool | None, why: str = "") -> dict:
    """One target's verdict; ``met`` None: not measured (never reported as met)."""
    out = {"target": goal, "measured": measured, "met": met}
    if why:
        out["note"] = why
    return out


def prepared_bot(workdir: Path, dialplan: Path = BENCH_DIALPLAN, calls_dir: Path | None = None):  # noqa: ANN201
    """``BotSessions`` for the bench dialplan with every prompt rendered ahead, as a campaign does."""
    from voicebot.apps import recipe
    from voicebot.apps.bot_session import BotSessions
    from voicebot.campaign.prompts import prerender
    from voicebot.dialplan import load_dialplan

    prompt_dir = workdir / "prompts"
    loaded = load_dialplan(dialplan)
    prerender(loaded.graph, recipe.prompt_cache(loaded, prompt_dir), loaded.dialplan.speech.rate_hz, [{}])
    return BotSessions(dialplan, prompt_dir, calls_dir=calls_dir)


def trunk_to(port: int):  # noqa: ANN201
    from voicebot.config import Trunk

    return Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{port}")


@dataclass
class PoolWatch:
    """Drains a pool's events and keeps what the benchmarks count."""

    pool: object
    answered: dict[str, float] = field(default_factory=dict)  # attempt id -> when the pool saw the answer
    ended: dict[str, object] = field(default_factory=dict)  # attempt id -> Ended
    ended_at: dict[str, float] = field(default_factory=dict)  # attempt id -> when the pool saw it end
    dial_failed: dict[str, str] = field(default_factory=dict)  # attempt id -> code
    worker_failed: list[str] = field(default_factory=list)
    readies: int = 0

    def drain(self, until_s: float) -> None:
        """Take events until the monotonic time ``until_s``."""
        from voicebot.calls.messages import Answered, DialFailed, Ended, Ready, WorkerFailed

        while (left := until_s - time.monotonic()) > 0:
            pooled = self.pool.next_event(min(left, 0.2))
            if pooled is None:
                continue
            e = pooled.event
            if isinstance(e, Answered):
                self.answered[e.attempt_id] = pooled.received_at
            elif isinstance(e, Ended):
                self.ended[e.attempt_id] = e
                self.ended_at[e.attempt_id] = pooled.received_at
            elif isinstance(e, DialFailed):
                self.dial_failed[e.attempt_id] = e.code
            elif isinstance(e, Ready):
                self.readies += 1
            elif isinstance(e, WorkerFailed):
                self.worker_failed.append(f"{e.code}: {e.message}")

    def until(self, done, timeout_s: float) -> bool:  # noqa: ANN001 - a () -> bool
        """Drain until ``done()`` or the timeout; whether it got done."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.drain(min(deadline, time.monotonic() + 0.2))
        return True

    @property
    def worker_lost(self) -> int:
        return sum(1 for e in self.ended.values() if e.outcome == "worker_lost")
