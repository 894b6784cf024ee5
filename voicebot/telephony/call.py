"""A pjsua2 Call that reports what happens to it and wires its audio to a MediaPort.

Every callback is guarded: pjsua2 prints and swallows exceptions raised in
Python callbacks, which would leave a call half set up with nobody told.
Callbacks run on the SIP-owner thread (inside ``libHandleEvents``); the
listener must not delete the call from inside one.
"""

from __future__ import annotations

import sys
import traceback
from typing import Protocol

import pjsua2 as pj


class CallListener(Protocol):
    def call_state(self, call: DialCall, state: int, sip_code: int, reason: str) -> None: ...

    def call_media_active(self, call: DialCall) -> None: ...

    def call_dtmf(self, call: DialCall, digit: str) -> None: ...

    def call_error(self, call: DialCall, where: str, error: Exception) -> None: ...


class DialCall(pj.Call):
    def __init__(self, account: pj.Account, attempt_id: str, listener: CallListener) -> None:
        super().__init__(account)
        self.attempt_id = attempt_id
        self._listener = listener
        self._audio: pj.AudioMedia | None = None  # the call's bridge port while media is active

    def connect_port(self, port: pj.AudioMediaPort) -> bool:
        """Both directions between the call and ``port``; False if the call has no active audio."""
        ci = self.getInfo()  # bound first: iterating getInfo().media directly reads freed memory
        for media in ci.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(media.index)
                port.startTransmit(audio)
                audio.startTransmit(port)
                self._audio = audio
                return True
        return False

    def disconnect_port(self, port: pj.AudioMediaPort) -> None:
        if self._audio is None:
            return
        try:
            port.stopTransmit(self._audio)
            self._audio.stopTransmit(port)
        except pj.Error:
            pass  # the stream is already gone (remote hangup): pjmedia removed the links with it
        self._audio = None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            ci = self.getInfo()
            self._listener.call_state(self, ci.state, int(ci.lastStatusCode), ci.lastReason)
        except Exception as e:
            self._report("onCallState", e)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            self._listener.call_media_active(self)
        except Exception as e:
            self._report("onCallMediaState", e)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        try:
            self._listener.call_dtmf(self, prm.digit)
        except Exception as e:
            self._report("onDtmfDigit", e)

    def _report(self, where: str, error: Exception) -> None:
        try:
            self._listener.call_error(self, where, error)
        except Exception:
            traceback.print_exc(file=sys.stderr)
