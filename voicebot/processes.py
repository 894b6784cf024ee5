"""Helpers for the local processes the project starts (mosquitto, baresip, sipp): ports, waiting, ending."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 the system calls free right now (for a process about to bind it)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindable(ports: Iterable[tuple[int, int]]) -> bool:
    """Whether every (socket kind, port) can be bound on 127.0.0.1 at once, right now."""
    socks = []
    try:
        for kind, port in ports:
            sock = socket.socket(socket.AF_INET, kind)
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


def wait_listening(proc: subprocess.Popen, port: int, timeout_s: float) -> bool:
    """Until ``proc`` accepts TCP connections on 127.0.0.1:``port``: True; False if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def end_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> int | None:
    """Ask ``proc`` to exit (SIGTERM), kill it if it does not within ``timeout_s``; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    return proc.returncode
