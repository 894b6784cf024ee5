"""RFC 4475 torture messages against a media worker's SIP port while a call is up.

The 50 messages live in ``../shared/sip-torture/`` beside the clone (read in
place, never copied here). Each worker listens on one transport, so the test
runs once per transport: a worker dials a sipp UAS that answers and echoes
RTP; while that call is up every message is sent raw to the worker's SIP port
(UDP: one datagram each; TCP: one connection each). Then the worker must still
be up and answering, the call must end normally with a complete record, a new
call must work, and the worker must stop with exit code 0.

Every wait is bounded; sipp and the workers are killed by PID at teardown.
"""

from __future__ import annotations

import os
import queue
import re
import selectors
import socket
import time
from pathlib import Path

import pytest

TORTURE_DIR = Path(__file__).parent.parent.parent / "shared" / "sip-torture"

CALL_MS = 5000  # sipp hangs up the first call this long after the ACK: the torture runs inside it
TCP_REPLY_S = 0.05  # per message (answers take ~1 ms): a malformed one may get no answer at all
_STATUS = re.compile(rb"^SIP/2\.0 (\d{3})", re.MULTILINE)


def _torture_messages() -> list[tuple[str, bytes]]:
    if not TORTURE_DIR.is_dir():
        pytest.fail(f"the RFC 4475 torture messages are missing: expected {TORTURE_DIR} (../shared/sip-torture beside the clone)")
    files = sorted(TORTURE_DIR.glob("*.dat"))
    assert len(files) == 50, f"{len(files)} .dat files in {TORTURE_DIR}, RFC 4475 has 50"
    return [(f.name, _on_the_wire(f.read_bytes())) for f in files]


def _on_the_wire(data: bytes) -> bytes:
    # The README: stored with LF, sent with CRLF, except files that already carry
    # their CRLFs (binary bodies such as mpart01.dat, where a bare LF is body data).
    return data if b"\r\n" in data else data.replace(b"\n", b"\r\n")


def _next_of(w, kind: type, timeout_s: float) -> list:
    """Events up to and including the first of ``kind``."""
    events = []
    deadline = time.monotonic() + timeout_s
    while not events or not isinstance(events[-1], kind):
        events.append(w.next_event(max(0.1, deadline - time.monotonic())))
        assert time.monotonic() < deadline + 0.5, f"no {kind.__name__} within {timeout_s} s: {events}"
    return events


def _pending_events(w) -> list:
    events = []
    while True:
        try:
            events.append(w.events.get(timeout=0.05))
        except queue.Empty:
            return events


def _address(local_address: str) -> tuple[str, int]:
    host, port = local_address.rsplit(":", 1)
    return host, int(port)


# --- sending ------------------------------------------------------------------------------------


def _torture_udp(addr: tuple[str, int], messages: list[tuple[str, bytes]]) -> list[bytes]:
    """Every message as one datagram, back to back; returns what came back to us within 0.5 s.

    pjsip answers a UDP request at its Via's sent-by (with received=127.0.0.1),
    port 5060 by default: only a Via with rport (mpart01) brings a reply back here.
    """
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for _, data in messages:
            s.sendto(data, addr)
        s.settimeout(0.5)
        try:
            while True:
                replies.append(s.recv(65535))
        except (TimeoutError, ConnectionRefusedError):
            pass
    return replies


def _torture_tcp(addr: tuple[str, int], messages: list[tuple[str, bytes]]) -> dict[str, list[int]]:
    """Each message on its own connection; the status codes that came back on it within TCP_REPLY_S."""
    answers = {}
    for name, data in messages:
        with socket.create_connection(addr, timeout=2.0) as s:
            s.sendall(data)
            answers[name] = _statuses(s, TCP_REPLY_S)
    return answers


def _statuses(s: socket.socket, timeout_s: float) -> list[int]:
    """Status codes read from ``s`` until a final one or ``timeout_s``; a peer's close ends it too."""
    got = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                break
            try:
                chunk = s.recv(65535)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
            codes = [int(c) for c in _STATUS.findall(got)]
            if codes and codes[-1] >= 200:
                break
    return [int(c) for c in _STATUS.findall(got)]


def _options(transport: str, via_port: int, tag: str) -> bytes:
    return (
        f"OPTIONS sip:voicebot@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{via_port};branch=z9hG4bK-{tag};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:voicebot@127.0.0.1>\r\n"
        f"Call-ID: {tag}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _probe(addr: tuple[str, int], tcp: bool, tag: str) -> list[int]:
    """A well-formed OPTIONS: the status codes the worker answers it with within 2 s."""
    if tcp:
        with socket.create_connection(addr, timeout=2.0) as s:
            s.sendall(_options("TCP", s.getsockname()[1], tag))
            return _statuses(s, 2.0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(_options("UDP", s.getsockname()[1], tag), addr)
        return _statuses(s, 2.0)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_torture_messages_during_a_call_leave_the_worker_and_the_call_intact(sipp, worker, transport: str, capsys) -> None:
    from voicebot.calls.messages import Answered, Dial, Ended, Hangup

    messages = _torture_messages()
    tcp = transport == "tcp"
    port = sipp("uas_answer", "-rtp_echo", "-d", str(CALL_MS), "-m", "2", tcp=tcp)
    w, ready = worker(port, tcp)
    sip_addr = _address(ready.local_address)
    pid = w.process.pid

    w.send(Dial("t1", "100"))
    events = _next_of(w, Answered, timeout_s=10)
    answered_at = time.monotonic()
    assert _probe(sip_addr, tcp, "before")[-1:] == [200]
    fds_before = _open_fds(pid)

    started = time.monotonic()
    if tcp:
        answers = _torture_tcp(sip_addr, messages)
        got = {name: codes for name, codes in answers.items() if codes}
        summary = f"{len(got)} of 50 answered on their connection: " + ", ".join(f"{n[:-4]} {c[-1]}" for n, c in got.items())
    else:
        replies = _torture_udp(sip_addr, messages)
        summary = f"{len(replies)} replies came back to the sender (the rest went to their Via's sent-by)"
    took = time.monotonic() - started

    # the worker is up, its SIP thread answers, and the call was never disturbed
    assert w.process.is_alive(), f"the worker died under the torture messages (exit code {w.process.exitcode})"
    assert _probe(sip_addr, tcp, "after")[-1:] == [200], "the worker no longer answers a well-formed OPTIONS"
    during = _pending_events(w)
    assert not [e for e in during if isinstance(e, Ended)], f"the call ended during the torture: {during}"
    assert time.monotonic() - answered_at < CALL_MS / 1000, "the torture outlasted the call: raise CALL_MS"
    fds_after = _open_fds(pid)

    # sipp hangs up: the call ends normally with its whole record
    events += during + _next_of(w, Ended, timeout_s=CALL_MS / 1000 + 10)
    (ended,) = [e for e in events if isinstance(e, Ended)]
    assert (ended.outcome, ended.sip_code, ended.hangup_by, ended.session_outcome) == ("answered", 200, "remote", "customer_hangup")
    assert ended.callback_errors == 0
    assert CALL_MS - 500 <= ended.talk_ms <= CALL_MS + 3000
    assert ended.frames_in >= ended.talk_ms // 20 // 2 and ended.frames_out >= ended.talk_ms // 20 // 2
    assert ended.first_sound_in_ms is not None  # sipp's echo of our tone kept coming back

    # a new call still works on the same worker (we hang this one up: sipp answers an early BYE)
    w.send(Dial("t2", "100"))
    _next_of(w, Answered, timeout_s=10)
    time.sleep(1.0)
    w.send(Hangup("t2"))
    (again,) = [e for e in _next_of(w, Ended, timeout_s=10) if isinstance(e, Ended)]
    assert (again.outcome, again.sip_code, again.hangup_by, again.callback_errors) == ("answered", 200, "local", 0)
    assert again.frames_in >= 25 and again.first_sound_in_ms is not None

    assert w.stop(timeout_s=10) == 0, "the worker did not stop cleanly after the torture"
    with capsys.disabled():
        print(f"\n  {transport}: 50 torture messages in {took:.2f} s; {summary}; worker fds {fds_before} -> {fds_after}")
