"""A baresip user agent as a simulated person on the far end of a call.

Used by the integration tests and the demo's local "PBX": a customer who
auto-answers and plays a WAV of answers, or an operator who auto-answers,
plays a WAV and presses a key. Every peer records what it hears and what it
sends (baresip's ``sndfile`` module) into its own directory.

baresip 1.0.0 (Debian 12) needs: ``answermode=auto`` on the account plus the
``menu`` module for auto-answer; ``aufile`` as the audio source (it has no
aufile player, so the player is ``aubridge,nil``: decoded audio goes nowhere
but through ``sndfile``); ``net_interface 127.0.0.1`` (not ``lo``). It hangs
up when the WAV ends, so the WAV carries trailing silence for as long as the
peer should stay on the line. Commands go through ``ctrl_tcp``: netstring-framed
JSON on a local TCP port.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.audio.frames import read_wav, write_wav
from voicebot.audio.resample import resample
from voicebot.errors import VoicebotError
from voicebot.processes import bindable, end_process, free_port, wait_listening

MODULES_DIR = Path("/usr/lib/baresip/modules")
_CODEC_RATES = {"g711": 8000, "g722": 16000, "opus": 48000}


class PeerError(VoicebotError):
    pass


def _free_sip_port() -> int:
    """A port free for SIP over UDP and TCP, with the next one free for TLS (baresip takes all three)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        if bindable(((socket.SOCK_DGRAM, port), (socket.SOCK_STREAM, port), (socket.SOCK_STREAM, port + 1))):
            return port
    raise PeerError("no free SIP port for baresip on 127.0.0.1", code="peer-start")


@dataclass(frozen=True)
class Account:
    """One more person on the same baresip: a user (e.g. a number) with its own voice, or one who never answers."""

    user: str
    play: Path | None = None  # None: the peer's own WAV
    answer: bool = True  # False: it rings until the caller gives up


@dataclass(frozen=True)
class Recording:
    """One call's audio as a peer saw it: what it heard (decoded) and what it sent (encoded)."""

    heard: Path
    sent: Path


@dataclass
class BaresipPeer:
    """One baresip process on 127.0.0.1 that auto-answers every call, playing ``play``."""

    name: str
    workdir: Path
    play: Path
    codecs: tuple[str, ...] = ("g711",)  # baresip codec modules: g711, g722, opus
    tls_certificate: Path | None = None  # PEM with key and certificate: SIP over TLS on sip_port + 1
    accounts: tuple[Account, ...] = ()  # more users on this baresip, each with its own WAV
    max_calls: int = 64  # per user; beyond it baresip answers 486 "Max Calls" (its default is 4)
    sip_port: int = 0
    ctrl_port: int = 0
    log: list[str] = field(default_factory=list)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _token: int = field(default=0, init=False, repr=False)
    _source: Path | None = field(default=None, init=False, repr=False)

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.sip_port}"

    @property
    def tls_port(self) -> int:
        return self.sip_port + 1

    @property
    def home(self) -> Path:
        return self.workdir / self.name

    def start(self, timeout_s: float = 10.0) -> BaresipPeer:
        exe = shutil.which("baresip")
        if exe is None:
            raise PeerError("baresip is not installed (Debian baresip-core; `make setup` installs it)", code="peer-missing")
        if not self.play.is_file():
            raise PeerError(f"{self.play}: no such WAV for peer {self.name}", code="peer-wav")
        self.home.mkdir(parents=True, exist_ok=True)
        self.sip_port = self.sip_port or _free_sip_port()
        self.ctrl_port = self.ctrl_port or free_port(socket.SOCK_STREAM)
        self._source = self._source_wav()
        (self.home / "config").write_text(self._config(), encoding="utf-8")
        (self.home / "accounts").write_text(self._accounts(), encoding="utf-8")
        out = open(self.home / "baresip.log", "wb")  # noqa: SIM115 - the process owns it until stop()
        self._proc = subprocess.Popen([exe, "-f", str(self.home)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        if wait_listening(self._proc, self.ctrl_port, timeout_s):
            return self
        code = self._proc.poll()
        self.stop()
        if code is not None:
            raise PeerError(f"baresip {self.name} exited with {code}: {self._log_tail()}", code="peer-start")
        raise PeerError(f"baresip {self.name} did not open its control port within {timeout_s} s: {self._log_tail()}", code="peer-start")

    def command(self, command: str, params: str = "", timeout_s: float = 5.0) -> dict:
        """Run a baresip command (e.g. ``sndcode 1``, ``hangup``) and return its JSON response."""
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=timeout_s) as s:
            s.sendall(b"%d:%s," % (len(body), body))
            reader = _Netstrings(s)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = json.loads(reader.next())
                if message.get("response") and message.get("token") == token:
                    if not message.get("ok", False):
                        raise PeerError(f"baresip {self.name}: {command} {params}: {message.get('data', '')}", code="peer-command")
                    return message
        raise PeerError(f"baresip {self.name}: no response to {command}", code="peer-command")

    def recordings(self) -> list[Recording]:
        """Every call's recording pair, oldest first (sndfile names them by time and direction)."""
        heard = sorted(self.home.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
        return [Recording(h, h.with_name(h.name.replace("-dec.wav", "-enc.wav"))) for h in heard]

    def wait_for_recording(self, seconds: float, timeout_s: float) -> None:
        """Until the current call has been recorded for ``seconds`` (sndfile writes as it goes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            files = sorted(self.home.glob("dump-*-dec.wav"), key=lambda p: p.stat().st_mtime)
            if files and files[-1].stat().st_size >= seconds * 16000:  # 8 kHz, 16 bit
                return
            time.sleep(0.1)
        raise PeerError(f"baresip {self.name}: no call recorded {seconds} s within {timeout_s} s", code="peer-timeout")

    def active_calls(self) -> int:
        m = re.search(r"Active calls \((\d+)\)", self.command("listcalls").get("data", ""))
        if m is None:
            raise PeerError(f"baresip {self.name}: unexpected listcalls answer", code="peer-command")
        return int(m.group(1))

    def wait_idle(self, timeout_s: float) -> None:
        """Until no call is up (sndfile finishes a WAV's header when its call closes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.active_calls() == 0:
                return
            time.sleep(0.1)
        raise PeerError(f"baresip {self.name}: calls still up after {timeout_s} s", code="peer-timeout")

    def stop(self) -> int | None:
        if self._proc is None:
            return None
        code, self._proc = end_process(self._proc), None
        return code

    def __enter__(self) -> BaresipPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def uri_of(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def _accounts(self) -> str:
        lines = [f"<{self.uri}>;regint=0;answermode=auto"]
        for i, account in enumerate(self.accounts):
            line = f"<{self.uri_of(account.user)}>;regint=0;answermode={'auto' if account.answer else 'manual'}"
            if account.play is not None:
                line += f";audio_source=aufile,{self._source_wav(account.play, f'play-{i}.wav')}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def _source_wav(self, play: Path | None = None, name: str = "play.wav") -> Path:
        # aufile refuses a WAV whose rate differs from the codec's (G.722: 16 kHz): convert a copy
        play = play or self.play
        rate = _CODEC_RATES.get(self.codecs[0], 8000)
        with wave.open(str(play)) as w:
            if w.getframerate() == rate and w.getnchannels() == 1:
                return play
        pcm, source_rate = read_wav(play)
        converted = self.home / name
        write_wav(converted, resample(pcm, source_rate, rate), rate)
        return converted

    def _config(self) -> str:
        with wave.open(str(self._source)) as w:
            rate, channels = w.getframerate(), w.getnchannels()
        codec_modules = [f"module {c}.so" for c in self.codecs]
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            f"audio_source aufile,{self._source}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"audio_srate {rate}",
            f"audio_channels {channels}",
            "rtp_timeout 0",
            f"call_max_calls {self.max_calls}",
            f"module_path {MODULES_DIR}",
            *codec_modules,
            "module aufile.so",
            "module aubridge.so",
            "module sndfile.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.home}",
        ]
        if self.tls_certificate is not None:
            lines.append(f"sip_certificate {self.tls_certificate}")
        return "\n".join(lines) + "\n"

    def _log_tail(self, n: int = 8) -> str:
        try:
            return " | ".join((self.home / "baresip.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class _Netstrings:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    def next(self) -> bytes:
        while True:
            head, sep, rest = self._buf.partition(b":")
            if sep and head.isdigit() and len(rest) > int(head):
                n = int(head)
                self._buf = rest[n + 1 :]
                return rest[:n]
            chunk = self._sock.recv(65536)
            if not chunk:
                raise PeerError("baresip closed its control connection", code="peer-command")
            self._buf += chunk
