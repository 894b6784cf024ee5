"""One pjsua2 Endpoint set up from a trunk: no threads of its own, null audio, one transport, one account.

The thread that calls ``open()`` becomes the SIP owner: pjsua2 runs every SIP
callback inside its ``libHandleEvents`` calls (``threadCnt=0``). pjmedia's
clock thread still drives the conference bridge, and with it every
``MediaPort``, on its own.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pjsua2 as pj

from voicebot.audio.frames import NARROWBAND, AudioFormat
from voicebot.config import Trunk
from voicebot.errors import SipError

# Asked of pjsua; it clamps this to the build's PJSUA_MAX_CALLS (4 in the PyPI
# wheel) without a word, so the real number is read back afterwards.
_REQUESTED_MAX_CALLS = 4096
_TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
_CODEC_IDS = {"PCMU": "PCMU/8000", "PCMA": "PCMA/8000", "G722": "G722/16000", "opus": "opus/48000"}


class DialerAccount(pj.Account):
    """The trunk account. An outbound dialer takes no calls: inbound INVITEs get a
    deliberate 603 (pjsua2 would otherwise answer 500 and hold a call slot)."""

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            call = pj.Call(self, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = pj.PJSIP_SC_DECLINE
            call.hangup(op)
        except Exception:  # pjsua2 prints and swallows callback exceptions: say what failed
            traceback.print_exc(file=sys.stderr)


@dataclass(frozen=True)
class EndpointSettings:
    bind_address: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    fmt: AudioFormat = NARROWBAND  # the bridge rate: 8 kHz for G.711 trunks
    caller_id: str | None = None
    log_level: int = 0  # pjsip's own log (0-6) to stderr; 0 keeps it quiet


def build_max_calls() -> int:
    """Calls this pjsua build allows at once (after ``libInit``).

    pjsua2 has no getter for its UA config, but the C library exports
    ``pjsua_call_get_max_count()``, which returns the clamped value.
    """
    return int(ctypes.CDLL(pj._pjsua2.__file__).pjsua_call_get_max_count())


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    # libCreate logs a banner to fd 1 before any log config can apply.
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _host_of(uri: str) -> str:
    m = re.match(r"^sips?:(?:[^@;>]*@)?([^;>?]+)", uri)
    if not m:
        raise SipError(f"cannot find the host in SIP URI '{uri}'", code="sip-bad-uri")
    return m.group(1)


class SipEndpoint:
    """Owns the Endpoint, its transport and the trunk account; ``close()`` destroys them in a safe order."""

    def __init__(self, trunk: Trunk, settings: EndpointSettings | None = None) -> None:
        self.trunk = trunk
        self.settings = settings or EndpointSettings()
        self.ep: pj.Endpoint | None = None
        self.account: pj.Account | None = None
        self.max_calls = 0
        self.local_address = ""

    def open(self) -> None:
        s = self.settings
        ep = pj.Endpoint()
        with _quiet_stdout():
            ep.libCreate()
        self.ep = ep
        try:
            cfg = pj.EpConfig()
            cfg.uaConfig.threadCnt = 0
            cfg.uaConfig.maxCalls = _REQUESTED_MAX_CALLS
            cfg.logConfig.level = s.log_level
            cfg.logConfig.consoleLevel = s.log_level
            cfg.medConfig.clockRate = s.fmt.rate_hz
            cfg.medConfig.sndClockRate = s.fmt.rate_hz
            cfg.medConfig.audioFramePtime = s.fmt.frame_ms
            cfg.medConfig.ptime = s.fmt.frame_ms
            cfg.medConfig.noVad = True  # send every frame: no comfort-noise gaps in the far end's recording
            cfg.medConfig.ecTailLen = 0  # no echo canceller: nothing plays into a microphone here
            ep.libInit(cfg)
            self.max_calls = build_max_calls()
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = s.bind_address
            tcfg.publicAddress = s.bind_address
            tcfg.port = s.port
            transport_id = ep.transportCreate(_TRANSPORTS[self.trunk.transport], tcfg)
            self.local_address = ep.transportGetInfo(transport_id).localName
            ep.audDevManager().setNullDev()
            self._set_codecs()
            ep.libStart()
            self.account = DialerAccount()
            self.account.create(self._account_config(transport_id), True)
        except pj.Error as e:
            self.close()
            raise SipError(f"SIP endpoint set-up failed: {e.info()}", code="sip-endpoint") from None
        except SipError:
            self.close()
            raise

    def _set_codecs(self) -> None:
        # Only the trunk's codecs are offered, in its order of preference.
        wanted = [_CODEC_IDS[c] for c in self.trunk.codecs]
        available = [c.codecId for c in self.ep.codecEnum2()]
        for codec_id in available:
            self.ep.codecSetPriority(codec_id, 0)
        found = 0
        for rank, prefix in enumerate(wanted):
            for codec_id in available:
                if codec_id.startswith(prefix + "/"):
                    self.ep.codecSetPriority(codec_id, 255 - rank)
                    found += 1
        if not found:
            raise SipError(f"none of the trunk's codecs {self.trunk.codecs} is in this pjsua build", code="sip-codecs")

    def _account_config(self, transport_id: int) -> pj.AccountConfig:
        trunk = self.trunk
        host = _host_of(trunk.registrar or trunk.uri_template)
        user = self.settings.caller_id or trunk.username or "voicebot"
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@{host}"
        acfg.sipConfig.transportId = transport_id
        acfg.mediaConfig.transportConfig.boundAddress = self.settings.bind_address
        if trunk.proxy:
            acfg.sipConfig.proxies.append(trunk.proxy)
        if trunk.username:
            password = os.environ.get(trunk.password_env, "") if trunk.password_env else ""
            if trunk.password_env and not password:
                raise SipError(f"environment variable {trunk.password_env} (the trunk password) is not set", code="sip-auth")
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", trunk.username, 0, password))
        if trunk.registrar:
            acfg.regConfig.registrarUri = trunk.registrar
            acfg.regConfig.registerOnAdd = True
        return acfg

    def uri_for(self, number: str) -> str:
        uri = self.trunk.uri_template.format(number=number)
        if self.trunk.transport != "udp" and "transport=" not in uri:
            uri += f";transport={self.trunk.transport}"
        return uri

    def handle_events(self, timeout_ms: int) -> None:
        self.ep.libHandleEvents(timeout_ms)

    def close(self) -> None:
        """Drop the account, then destroy the library. Calls and ports must be gone first."""
        if self.ep is None:
            return
        if self.account is not None:
            try:
                self.account.shutdown()
            except pj.Error:
                pass  # already unusable: the library goes next anyway
            self.account = None
        gc.collect()  # a pjsua2 object still alive after libDestroy aborts the process
        self.ep.libDestroy()
        self.ep = None
