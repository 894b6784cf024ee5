"""Which MQTT broker to use, and a private mosquitto when none is configured.

``mqtt://[user@]host[:port]`` (or ``mqtts://`` for TLS, port 8883 by
default, with ``?ca=FILE`` for a private CA and ``&cert=FILE&key=FILE`` for a
client certificate); the password comes from the environment
(``VOICEBOT_MQTT_PASSWORD``) and is never printed: ``BrokerSettings`` shows it
as ``***``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt
import structlog

from voicebot.errors import VoicebotError
from voicebot.processes import end_process, free_port, wait_listening

PASSWORD_ENV = "VOICEBOT_MQTT_PASSWORD"
_log = structlog.get_logger("voicebot.bus")


class BrokerError(VoicebotError):
    code = "broker-error"


@dataclass(frozen=True)
class BrokerSettings:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None  # trust this CA (a private broker's) instead of the system's
    cert_file: str | None = None  # a client certificate, for brokers that authenticate by it
    key_file: str | None = None

    @classmethod
    def from_url(cls, url: str, environ: dict[str, str] | None = None) -> BrokerSettings:
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BrokerError(f"'{url}' is not a broker URL: write mqtt://host[:port] or mqtts://user@host[:port]", code="broker-url")
        if parts.password:
            raise BrokerError(f"a broker password is never written in a URL: put it in ${PASSWORD_ENV}", code="broker-url")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise BrokerError(f"'{url}': the port is not a number", code="broker-url") from None
        username = unquote(parts.username) if parts.username else None
        options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(options.keys() - {"ca", "cert", "key"})
        if unknown:
            raise BrokerError(f"'{url}': unknown option {unknown[0]!r} (known: ca, cert, key)", code="broker-url")
        if options and not tls:
            raise BrokerError(f"'{url}': ca/cert/key are TLS options: write mqtts://", code="broker-url")
        if ("cert" in options) != ("key" in options):
            raise BrokerError(f"'{url}': a client certificate needs both cert= and key=", code="broker-url")
        for name, path in options.items():
            if not Path(path).is_file():
                raise BrokerError(f"'{url}': {name} file {path} does not exist", code="broker-url")
        password = env.get(PASSWORD_ENV) if username else None
        return cls(parts.hostname, port, username, password, tls, options.get("ca"), options.get("cert"), options.get("key"))

    def client(
        self, identifier: str, *, will: aiomqtt.Will | None = None, clean_session: bool = True, keepalive_s: int = 10
    ) -> aiomqtt.Client:
        """An aiomqtt client for this broker (MQTT 3.1.1, which every broker speaks)."""
        tls_context = None
        if self.tls:
            tls_context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                tls_context.load_cert_chain(self.cert_file, self.key_file)
        return aiomqtt.Client(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            will=will,
            clean_session=clean_session,
            keepalive=keepalive_s,
            tls_context=tls_context,
            timeout=5,
        )

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        query = "&".join(f"{k}={v}" for k, v in (("ca", self.ca_file), ("cert", self.cert_file), ("key", self.key_file)) if v)
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}{'?' + query if query else ''}"


class BrokerLink:
    """The state of one connection that is kept up: whether it is up, since when, and how long to wait
    before the next attempt. One warning per outage, not one per attempt."""

    BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

    def __init__(self, broker: BrokerSettings, role: str, on_outage: Callable[[str], None] | None = None) -> None:
        self.broker = broker
        self.role = role
        self.on_outage = on_outage
        self.connected = False
        self.since: float | None = None  # time.monotonic() of the last connect, while connected
        self.last_error = ""
        self._failures = 0

    async def serve(
        self, identifier: str, serve: Callable[[aiomqtt.Client], Awaitable[None]], until: Callable[[], bool], **client_options: Any
    ) -> None:
        """``serve(client)`` on a connection; reconnect whenever it drops, until ``until()`` (checked when serve returns)."""
        while not until():
            try:
                async with self.broker.client(identifier, **client_options) as client:
                    self.connected, self.since, self._failures = True, time.monotonic(), 0
                    await serve(client)
            except aiomqtt.MqttError as e:
                if self.connected or self._failures == 0:
                    _log.warning("broker_unreachable", broker=str(self.broker), role=self.role, error=str(e))
                    if self.on_outage is not None:
                        self.on_outage(str(e))
                self.connected, self.since, self.last_error = False, None, str(e)
                await asyncio.sleep(self.BACKOFF_S[min(self._failures, len(self.BACKOFF_S) - 1)])
                self._failures += 1
        self.connected, self.since = False, None


async def run_together(
    coroutines: list[Coroutine[Any, Any, None]],
    until: Callable[[], bool],
    every: Callable[[], None] | None = None,
    watch: tuple[asyncio.Task, ...] = (),
) -> None:
    """Run ``coroutines`` side by side until ``until()``, calling ``every()`` each tenth of a second.

    The first of them (or of the ``watch`` tasks, which are not ours to cancel) to fail ends
    them all with its error: a dropped connection raises MqttError, and the caller reconnects.
    """
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        while not until():
            for t in (*tasks, *watch):
                if t.done():
                    t.result()
            if every is not None:
                every()
            await asyncio.sleep(0.1)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _die_with_parent() -> None:
    # a private broker must not outlive a run that was killed (kill -9 leaves no time to stop it)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A private mosquitto on 127.0.0.1 (a free port), for a run with no broker configured."""

    def __init__(self, workdir: Path, port: int = 0, persistence: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.persistence = persistence
        self._proc: subprocess.Popen | None = None

    @property
    def settings(self) -> BrokerSettings:
        return BrokerSettings("127.0.0.1", self.port)

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise BrokerError("mosquitto is not installed (Debian mosquitto; `make setup` installs it)", code="broker-missing")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(socket.SOCK_STREAM)
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",  # 127.0.0.1 only, and private to this run
            f"persistence {'true' if self.persistence else 'false'}",
            # stay the user we are: started as root, mosquitto switches to its own user, which drops the death signal
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - the process owns it
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        log.close()
        if wait_listening(self._proc, self.port, timeout_s):
            return self
        code = self._proc.poll()
        self.stop()
        if code is not None:
            raise BrokerError(f"mosquitto exited with {code}: see {self.workdir / 'mosquitto.log'}", code="broker-start")
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s", code="broker-start")

    def stop(self) -> None:
        if self._proc is not None:
            end_process(self._proc)
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
