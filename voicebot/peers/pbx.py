"""A simulated PBX for the demo and tests: a stateless SIP router on 127.0.0.1 (UDP).

The dialer's trunk points here. Each INVITE's number decides what happens:
numbers in ``busy`` get 486 from the router itself, numbers not in ``routes``
get 404, and the rest are forwarded to the peer that plays that person (a
baresip with one account per number), the Request-URI rewritten to it.

Stateless (RFC 3261 16.11): the router adds its own Via with a branch derived
from the incoming one (so a CANCEL or a non-2xx ACK takes the same path as its
INVITE) and sends each response on by the next Via. It adds no Record-Route:
in-dialog requests (the ACK of a 200, BYE, REFER) go straight between the two
ends. Only what a demo needs: no TCP, no forking, no authentication.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field

_MAX_DATAGRAM = 65535
_VIA = re.compile(r"^(via|v)\s*:", re.I)
_SENT_BY = re.compile(r"^\s*SIP/2\.0/UDP\s+([^;\s]+)(.*)$", re.I)


@dataclass
class SipRouter:
    target: tuple[str, int]  # where known numbers are sent (e.g. a baresip with one account per number)
    routes: set[str] = field(default_factory=set)  # numbers (as in the Request-URI user part) that exist
    busy: set[str] = field(default_factory=set)  # numbers that answer 486 Busy Here
    port: int = 0
    forwarded: int = 0
    answered_locally: int = 0
    dropped: int = 0  # datagrams that were not SIP the router could route
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> SipRouter:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="sip-router", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> SipRouter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                data, source = self._sock.recvfrom(_MAX_DATAGRAM)
            except OSError:
                return
            try:
                self._route(data, source)
            except (ValueError, IndexError, UnicodeDecodeError):
                self.dropped += 1  # garbage in: a router drops it and goes on

    def _route(self, data: bytes, source: tuple[str, int]) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no end of headers")
        lines = head.decode("utf-8").split("\r\n")
        if lines[0].startswith("SIP/2.0 "):
            self._response(lines, body)
        else:
            self._request(lines, body, source)

    def _request(self, lines: list[str], body: bytes, source: tuple[str, int]) -> None:
        method, uri, version = lines[0].split(" ", 2)
        user = uri.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        if method == "ACK" and (user in self.busy or user not in self.routes):
            return  # the ACK of our own 486/404 ends here
        if method == "INVITE" and user in self.busy:
            self._reply(lines, 486, "Busy Here", source)
            return
        if user not in self.routes and user not in self.busy:
            if method != "ACK":
                self._reply(lines, 404, "Not Found", source)
            return
        host, port = self.target
        lines[0] = f"{method} sip:{user}@{host}:{port} {version}"
        top = next(i for i, line in enumerate(lines) if _VIA.match(line))
        branch = re.search(r"branch=([^;,\s]+)", lines[top])
        digest = hashlib.sha1((branch.group(1) if branch else lines[top]).encode()).hexdigest()[:16]
        lines.insert(top, f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-r{digest}")
        for i, line in enumerate(lines):
            if line.lower().startswith("max-forwards:"):
                hops = int(line.split(":", 1)[1])
                if hops <= 0:
                    self._reply(lines[:top] + lines[top + 1 :], 483, "Too Many Hops", source)
                    return
                lines[i] = f"Max-Forwards: {hops - 1}"
        self._send(lines, body, (host, port))
        self.forwarded += 1

    def _response(self, lines: list[str], body: bytes) -> None:
        vias = [i for i, line in enumerate(lines) if _VIA.match(line)]
        if len(vias) < 2 or f"127.0.0.1:{self.port}" not in lines[vias[0]]:
            raise ValueError("a response that did not come through this router")
        del lines[vias[0]]
        self._send(lines, body, _via_destination(lines[vias[1] - 1]))
        self.forwarded += 1

    def _reply(self, request: list[str], code: int, reason: str, source: tuple[str, int]) -> None:
        keep = ("via", "v", "from", "f", "call-id", "i", "cseq")
        out = [f"SIP/2.0 {code} {reason}"]
        for line in request[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name in keep:
                out.append(line)
            elif name in ("to", "t"):
                out.append(line if ";tag=" in line else f"{line};tag=router{abs(hash(request[0])) % 10**8}")
        out.append("Content-Length: 0")
        via = next((line for line in request if _VIA.match(line)), None)
        self._send(out, b"", _via_destination(via) if via else source)
        self.answered_locally += 1

    def _send(self, lines: list[str], body: bytes, destination: tuple[str, int]) -> None:
        if self._sock is not None:
            self._sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body, destination)


def _via_destination(via: str) -> tuple[str, int]:
    """Where a response goes: the Via's received/rport if present, else its sent-by (RFC 3261 18.2.2, RFC 3581)."""
    value = via.split(":", 1)[1]
    m = _SENT_BY.match(value)
    if m is None:
        raise ValueError(f"not a UDP Via: {via}")
    sent_by, params = m.group(1), m.group(2)
    host, _, port = sent_by.partition(":")
    received = re.search(r";\s*received=([^;\s]+)", params)
    rport = re.search(r";\s*rport=(\d+)", params)
    return (received.group(1) if received else host, int(rport.group(1)) if rport else int(port or 5060))
