"""Shared test fixtures: sipp UAS peers on 127.0.0.1 (Debian sip-tester, installed by `make setup`)."""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.frames import NARROWBAND
from voicebot.config import Trunk
from voicebot.processes import free_port  # noqa: F401 - tests import it from here

SCENARIOS = Path(__file__).parent / "sipp"
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")  # shipped by Debian's sip-tester


def _dtmf_pcap(dest: Path, payload_type: int = 120) -> None:
    """Debian's digit-1 pcap with its RTP payload type rewritten to the one pjsua offers."""
    data = bytearray(DTMF_PCAP.read_bytes())
    offset = 24  # pcap global header; each packet: 16-byte record header, Ethernet 14, IPv4 20, UDP 8, RTP
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset + 8)
        udp = offset + 16 + 14 + 20
        data[udp + 6 : udp + 8] = b"\0\0"  # no UDP checksum: the payload changes
        data[udp + 9] = (data[udp + 9] & 0x80) | payload_type
        offset += 16 + length
    dest.write_bytes(bytes(data))


def _wait_listening(port: int, tcp: bool, proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sipp exited with {proc.returncode}"
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return  # taken: sipp is up
        time.sleep(0.05)
    raise AssertionError(f"sipp did not bind 127.0.0.1:{port} within {timeout_s} s")


def tone(freq_hz: float = 440.0, seconds: float = 1.0) -> bytes:
    t = np.arange(int(NARROWBAND.rate_hz * seconds)) / NARROWBAND.rate_hz
    return (0.3 * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


def events_until_ended(w, attempt_ids: set[str], timeout_s: float = 15.0) -> list:
    """A worker's events until every one of ``attempt_ids`` has ended (or failed to dial)."""
    from voicebot.calls.messages import DialFailed, Ended

    events, open_ids = [], set(attempt_ids)
    deadline = time.monotonic() + timeout_s
    while open_ids:
        event = w.next_event(max(0.1, deadline - time.monotonic()))
        events.append(event)
        if isinstance(event, (Ended, DialFailed)):
            open_ids.discard(event.attempt_id)
    return events


@pytest.fixture
def sipp(tmp_path: Path):
    """Start a sipp UAS: ``sipp(scenario, *args, tcp=False) -> port``; killed by PID at teardown."""
    assert shutil.which("sipp"), "sipp is not installed (Debian sip-tester; `make setup` installs it)"
    procs: list[subprocess.Popen] = []
    _dtmf_pcap(tmp_path / "dtmf_1.pcap")  # uas_answer plays it from sipp's working directory

    def start(scenario: str, *args: str, tcp: bool = False) -> int:
        port = free_port(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        cmd = ["sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", "127.0.0.1", "-p", str(port)]
        cmd += ["-mp", str(free_port()), "-nostdin", "-timeout", "30s", "-t", "t1" if tcp else "u1", *args]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        _wait_listening(port, tcp, proc)
        return port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def worker(tmp_path: Path):
    """``worker(port, tcp=False, **settings) -> (WorkerProcess, Ready)``; stopped at teardown, must exit 0."""
    from voicebot.telephony.playback import playback_sessions
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    started = []

    def start(port: int, tcp: bool = False, hang_up_after_ms: int | None = None, **settings):
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{port}", transport="tcp" if tcp else "udp")
        factory = playback_sessions(tone(), tmp_path, hang_up_after_ms)
        w = WorkerProcess(WorkerSettings(trunk, factory, **settings))
        started.append(w)
        return w, w.start(timeout_s=15)

    yield start
    codes = [w.stop(timeout_s=10) for w in started]
    assert codes == [0] * len(codes), f"worker exit codes {codes}: a pjsua2 object outlived libDestroy?"


@pytest.fixture
def baresip(tmp_path: Path):
    """Start baresip peers: ``baresip(name, wav) -> BaresipPeer`` (auto-answer, recording); stopped at teardown."""
    from voicebot.peers.baresip import BaresipPeer

    assert shutil.which("baresip"), "baresip is not installed (Debian baresip-core; `make setup` installs it)"
    peers: list[BaresipPeer] = []

    def start(name: str, wav: Path) -> BaresipPeer:
        peer = BaresipPeer(name, tmp_path / "peers", wav)
        peers.append(peer)
        return peer.start()

    yield start
    for peer in peers:
        peer.stop()


def locate(haystack: bytes, needle: bytes, rate_hz: int = 8000) -> tuple[float, float]:
    """Where ``needle`` (PCM) occurs in ``haystack``: (seconds, normalised correlation 0..1).

    A G.711 hop keeps the correlation of the same audio near 1; other speech stays well below 0.5.
    """
    h = np.frombuffer(haystack, dtype="<i2").astype(np.float64)
    n = np.frombuffer(needle, dtype="<i2").astype(np.float64)
    if len(n) == 0 or len(h) < len(n):
        return 0.0, 0.0
    size = 1 << int(np.ceil(np.log2(len(h) + len(n))))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[: len(h) - len(n) + 1]
    energy = np.convolve(h * h, np.ones(len(n)), mode="valid")  # the haystack's energy under each placement
    score = corr / (np.sqrt(np.maximum(energy, 1e-9)) * np.linalg.norm(n))
    best = int(np.argmax(score))
    return best / rate_hz, float(score[best])


def chunks_found(haystack: bytes, needle: bytes, min_score: float, rate_hz: int = 8000, chunk_s: float = 0.3) -> float:
    """The share of ``needle``'s sounding 0.3 s chunks found in ``haystack`` with at least ``min_score``.

    Chunk by chunk, because a jitter buffer may drop or repeat a frame now and then, which breaks
    one long correlation but not short ones.
    """
    n = int(rate_hz * chunk_s) * 2
    chunks = [needle[i : i + n] for i in range(0, len(needle) - n + 1, n)]
    sounding = [c for c in chunks if np.abs(np.frombuffer(c, dtype="<i2")).max() > 1000]
    if not sounding:
        return 0.0
    return sum(locate(haystack, c, rate_hz)[1] >= min_score for c in sounding) / len(sounding)


def heard_at(haystack: bytes, needle: bytes, rate_hz: int = 8000, chunk_s: float = 0.3) -> float:
    """Where ``needle`` starts in ``haystack`` (s), found by its first sounding 0.3 s chunk."""
    samples = np.frombuffer(needle, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 1000)
    first = int(loud[0]) if len(loud) else 0
    n = int(rate_hz * chunk_s)
    at, _ = locate(haystack, needle[2 * first : 2 * (first + n)], rate_hz)
    return at - first / rate_hz


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql).fetchall()


def group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def invites_by_attempt(trace: Path) -> dict[str, set[str]]:
    """attempt id -> the Call-IDs of the INVITEs that carried it (retransmissions share one)."""
    calls: dict[str, set[str]] = defaultdict(set)
    for message in trace.read_text(errors="replace").split("\n\n"):
        if re.search(r"^INVITE sip:", message, re.M):
            attempt = re.search(r"^X-Voicebot-Attempt:\s*(\S+)", message, re.M)
            call_id = re.search(r"^Call-ID:\s*(\S+)", message, re.M | re.I)
            if attempt and call_id:
                calls[attempt.group(1)].add(call_id.group(1))
    return calls
