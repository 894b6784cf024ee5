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

    def call_transfer_status(self, call: DialCall, code: int, reason: str, final: bool) -> bool: ...

    def call_error(self, call: DialCall, where: str, error: Exception) -> None: ...


class DialCall(pj.Call):
    """``role`` tells the listener which leg this is: the customer's or, in a bridge, the operator's."""

    def __init__(self, account: pj.Account, attempt_id: str, listener: CallListener, role: str = "customer") -> None:
        super().__init__(account)
        self.attempt_id = attempt_id
        self.role = role
        self._listener = listener
        self._audio: pj.AudioMedia | None = None  # the call's bridge port while media is active
        self._linked: pj.AudioMediaPort | None = None  # our port, while linked both ways

    def connect_port(self, port: pj.AudioMediaPort) -> bool:
        """Both directions between the call and ``port``; False if the call has no active audio."""
        audio = self._active_audio()
        if audio is None:
            return False
        port.startTransmit(audio)
        audio.startTransmit(port)
        self._audio, self._linked = audio, port
        return True

    def bridge_to(self, other: DialCall) -> bool:
        """Both calls' audio straight to each other through the conference bridge (the caller has
        unlinked the bot's ports first); False if either has no active audio."""
        mine, theirs = self._active_audio(), other._active_audio()
        if mine is None or theirs is None:
            return False
        mine.startTransmit(theirs)
        theirs.startTransmit(mine)
        self._audio, other._audio = mine, theirs
        return True

    def _active_audio(self) -> pj.AudioMedia | None:
        ci = self.getInfo()  # bound first: iterating getInfo().media directly reads freed memory
        for media in ci.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return self.getAudioMedia(media.index)
        return None

    def disconnect_port(self, port: pj.AudioMediaPort) -> None:
        if self._audio is None or self._linked is None:
            return
        self._linked = None
        try:
            port.stopTransmit(self._audio)
            self._audio.stopTransmit(port)
        except pj.Error:
            pass  # the stream is already gone (remote hangup): pjmedia removed the links with it

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

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # NOTIFYs about our REFER: 1xx progress, then the final status of the new call
        try:
            prm.cont = self._listener.call_transfer_status(self, int(prm.statusCode), prm.reason, bool(prm.finalNotify))
        except Exception as e:
            self._report("onCallTransferStatus", e)

    def _report(self, where: str, error: Exception) -> None:
        try:
            self._listener.call_error(self, where, error)
        except Exception:
            traceback.print_exc(file=sys.stderr)
