"""A media worker: one process, one pjsua2 Endpoint, up to K calls.

Threads inside the worker:

- the SIP owner (the process's main thread): the only one that touches
  pjsua2 objects. It polls ``libHandleEvents(10)``, runs commands from the
  manager, enforces ring and talk timeouts and tears calls down.
- pjmedia's clock thread: calls every ``MediaPort`` every 20 ms. It copies a
  frame and calls the session's ``next_outbound`` (cheap by contract); inbound
  frames only go into a queue.
- the session thread: feeds each call's session its inbound frames, DTMF,
  start and remote hangup, so recognition never delays the clock or SIP. A
  session that decides to end is hung up by the SIP owner.

Commands in and events out are plain frozen dataclasses on two queues
(``multiprocessing`` queues when the worker runs as a process).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

import pjsua2 as pj

from voicebot.audio.frames import AudioFormat
from voicebot.calls import outcomes
from voicebot.calls.messages import (
    Answered,
    Capacity,
    Command,
    Dial,
    DialFailed,
    Dialled,
    DtmfIn,
    Ended,
    HandoffRequested,
    Hangup,
    Ready,
    Ringing,
    ScriptProgress,
    Stop,
    Stopped,
    WorkerEvent,
    WorkerFailed,
)
from voicebot.calls.outcomes import LocalCancel
from voicebot.config import Trunk
from voicebot.errors import SipError
from voicebot.telephony.call import DialCall
from voicebot.telephony.channel import ChannelClosed, PipeChannel
from voicebot.telephony.endpoint import EndpointSettings, SipEndpoint
from voicebot.telephony.inbox import (
    Close,
    Dtmf,
    Inbound,
    LocalHangup,
    RemoteHangup,
    SessionInbox,
    SessionMessage,
    Start,
    TransferResult,
    deliver,
)
from voicebot.telephony.media_port import MediaPort

if TYPE_CHECKING:
    from voicebot.session import Handoff

ATTEMPT_HEADER = "X-Voicebot-Attempt"
_POLL_MS = 10
_KEY_PAUSE_S = 0.5  # one "," in a dialplan's send_dtmf
_KEY_S = 0.25  # what one RFC 2833 digit takes on the wire (event + gap)
_TEARDOWN_S = 5.0  # bound on waiting for the far end to confirm BYE/CANCEL at shutdown


class MediaSession(Protocol):
    """What the worker drives for an answered call (``voicebot.session.CallSession`` fits)."""

    outcome: str | None
    ended: bool

    def start(self, ts_ms: int = 0) -> None: ...

    def next_outbound(self, ts_ms: int) -> bytes: ...

    def on_inbound(self, frame: bytes, ts_ms: int) -> None: ...

    def dtmf(self, digit: str, ts_ms: int) -> None: ...

    def remote_hangup(self, ts_ms: int) -> None: ...

    def local_hangup(self, ts_ms: int, outcome: str) -> None: ...

    # A session that can hand its call to a person also has ``handoff_due`` (bool),
    # ``take_handoff() -> Handoff`` and ``transfer_result(ok, ts_ms, reason)``.


# (attempt_id, fmt, contact fields) -> session; picklable for spawn. A factory may
# have prepare(), called once in the worker before it reports Ready (load models there;
# the model host calls it before it forks), warm(), called in the worker after prepare()
# (what cannot be forked: a Whisper model's threads), and ``operator_legs`` (int, read after prepare()): pjsua calls to keep free for the
# operator legs of bridged handoffs, which the customer calls may then not take; and ``take_record(attempt_id)``
# (dict or None), called on the session thread once a session has seen its last event: the record its Ended carries.
SessionFactory = Callable[[str, AudioFormat, dict[str, str]], MediaSession]


@dataclass(frozen=True)
class WorkerSettings:
    trunk: Trunk
    session_factory: SessionFactory
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    ring_timeout_s: float = 30.0
    max_call_duration_s: float = 600.0


# --- one call inside the worker -----------------------------------------------------------


@dataclass(eq=False)
class _Leg:
    attempt_id: str
    call: DialCall
    dialled_at: float
    ring_deadline: float
    talk_deadline: float | None = None
    got_response: bool = False  # a provisional 18x arrived
    answered_at: float | None = None
    final_at: float | None = None  # final response: 200 OK or the failure
    ended_at: float | None = None
    cancel: LocalCancel | None = None
    hangup_by: str = "remote"
    local_outcome: str = "stopped"  # why we hung up, when the session had not ended the call itself
    contact: dict[str, str] = field(default_factory=dict)
    session: MediaSession | None = None
    record: dict | None = None  # from the session factory once the session has closed
    port: MediaPort | None = None
    callback_errors: int = 0
    disconnected: bool = False
    sip_code: int = 0
    reason: str = ""
    handoff: _HandoffState | None = None
    keys: list[tuple[float, str]] = field(default_factory=list)  # (when, digits) still to press
    keys_after_answer: str = ""  # an extension behind the dialled number ("," = 500 ms)
    session_after_keys: bool = False  # answered, its keys_after_answer still going out: the bot speaks after them
    hang_up_at: float | None = None  # the session is done; hang up once its last keys have gone out
    handoff_result: str = ""  # transferred | bridged | failed
    bridged: bool = False  # customer and operator talk through the bridge; the bot is off the line


@dataclass(eq=False)
class _HandoffState:
    request: Handoff
    deadline: float
    done: bool = False  # the session has been told how it went
    operator: DialCall | None = None  # bridge mode: the leg to the operator
    operator_port: MediaPort | None = None
    operator_down: bool = False


class _LoopedPrompt:
    """What the operator hears until they accept: the briefing, a pause, again (from the clock thread)."""

    def __init__(self, fmt: AudioFormat, pcm: bytes, pause_ms: int = 1500) -> None:
        self._fmt = fmt
        self._pcm = pcm + fmt.silence() * (pause_ms // fmt.frame_ms) if pcm else b""

    def next_outbound(self, ts_ms: int) -> bytes:
        if not self._pcm:
            return self._fmt.silence()
        n = self._fmt.bytes_per_frame
        pos = (self._fmt.nbytes(ts_ms) // n * n) % len(self._pcm)
        frame = self._pcm[pos : pos + n]
        return frame + bytes(n - len(frame))

    def heard(self, frame: bytes, ts_ms: int) -> None:
        pass  # the operator's voice reaches the customer only once the legs are bridged


class _SessionThread:
    """Runs every session method except ``next_outbound`` on one thread: control ahead of audio (``inbox.py``).

    It tells the SIP owner through ``notices``: ``("ended", id, None)`` when a
    session decides to end, ``("handoff", id, Handoff)`` when its script hands
    the call to a person (the briefing is rendered here, off the SIP thread),
    ``("closed", id, record)`` once a session has seen its last event.
    """

    def __init__(self, notices: queue.SimpleQueue, take_record: Callable[[str], dict | None] | None = None) -> None:
        self._inbox = SessionInbox()
        self._notices = notices
        self._take_record = take_record
        self._thread = threading.Thread(target=self._run, name="sessions", daemon=True)
        self._thread.start()

    def post(self, attempt_id: str, session: MediaSession, message: SessionMessage) -> None:
        self._inbox.put(attempt_id, session, message)

    def close(self, timeout_s: float = 5.0) -> None:
        self._inbox.shut()
        self._thread.join(timeout_s)

    def _record(self, attempt_id: str) -> dict | None:
        if self._take_record is None:
            return None
        try:
            return self._take_record(attempt_id)
        except Exception:  # a record that cannot be made must not keep the call's Ended from the manager
            traceback.print_exc(file=sys.stderr)
            return None

    def _run(self) -> None:
        reported: set[str] = set()
        while (item := self._inbox.get()) is not None:
            attempt_id, s, message = item
            session = cast(MediaSession, s)
            if isinstance(message, Close):
                reported.discard(attempt_id)
                if dropped := self._inbox.take_dropped(attempt_id):
                    print(
                        f"voicebot worker: {attempt_id}: {dropped} inbound frames dropped (the session thread fell behind)", file=sys.stderr
                    )
                self._notices.put(("closed", attempt_id, self._record(attempt_id)))
                continue
            try:
                deliver(session, message)
                if getattr(session, "handoff_due", False):
                    self._notices.put(("handoff", attempt_id, session.take_handoff()))  # type: ignore[attr-defined]
                if getattr(session, "keys_due", None):
                    self._notices.put(("keys", attempt_id, session.take_keys()))  # type: ignore[attr-defined]
                if getattr(session, "progress_due", False):
                    self._notices.put(("progress", attempt_id, session.take_progress()))  # type: ignore[attr-defined]
            except Exception:  # one broken session must not stop the others
                traceback.print_exc(file=sys.stderr)
            if session.ended and attempt_id not in reported:
                reported.add(attempt_id)
                self._notices.put(("ended", attempt_id, None))


class MediaWorker:
    """The SIP owner loop. Build, then ``run(commands, events)`` on the thread that will own pjsua2."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.fmt = settings.endpoint.fmt
        self._sip = SipEndpoint(settings.trunk, settings.endpoint)
        self._legs: dict[str, _Leg] = {}  # every live Call and MediaPort is reachable from here
        self._seen: set[str] = set()
        self._notices: queue.SimpleQueue = queue.SimpleQueue()
        self._closed: set[str] = set()  # sessions done with: their legs may be reaped
        self._events: queue.Queue | None = None
        self._sessions: _SessionThread | None = None
        self._kept_for_operators = 0
        self._capacity = 0  # customer calls taken at once, as last reported

    def run(self, commands: queue.Queue, events: queue.Queue) -> None:
        self._events = events
        try:
            self._sip.open()
        except SipError as e:
            events.put(WorkerFailed(e.code, str(e)))
            return
        take_record = getattr(self.settings.session_factory, "take_record", None)
        self._sessions = sessions = _SessionThread(self._notices, take_record)
        try:
            prepare = getattr(self.settings.session_factory, "prepare", None)
            if prepare is not None:
                prepare()
            warm = getattr(self.settings.session_factory, "warm", None)
            if warm is not None:
                warm()
            self._kept_for_operators = kept = int(getattr(self.settings.session_factory, "operator_legs", 0))
            if self._sip.max_calls - kept < 1:
                events.put(
                    WorkerFailed(
                        "sip-no-room-for-operator",
                        f"this pjsua build takes {self._sip.max_calls} calls at once: "
                        f"none left for customers after {kept} kept for bridged handoffs' operator legs",
                    )
                )
                return
            self._capacity = customer_capacity(self._sip.max_calls, kept, 0)
            events.put(Ready(self._capacity, self._sip.local_address))
            while self._step(commands):
                pass
            self._hang_up_all()
        finally:
            sessions.close()
            for leg in self._legs.values():
                _close_ports(leg)  # out of the bridge before libDestroy, while each port is whole
            self._legs.clear()
            self._sip.close()
            events.put(Stopped())

    def _step(self, commands: queue.Queue) -> bool:
        self._sip.handle_events(_POLL_MS)
        while True:
            try:
                command = commands.get_nowait()
            except ChannelClosed:
                return False  # the manager is gone: hang up and exit rather than live on as an orphan
            except queue.Empty:
                break
            if isinstance(command, Stop):
                return False
            if isinstance(command, Dial):
                self._dial(command)
            elif isinstance(command, Hangup):
                self._hang_up(command.attempt_id, LocalCancel.STOPPED)
        self._take_notices()
        self._check_timers(time.monotonic())
        self._reap()
        self._report_capacity()
        return True

    def _report_capacity(self) -> None:
        operator_legs = sum(1 for leg in self._legs.values() if not _operator_gone(leg))
        capacity = customer_capacity(self._sip.max_calls, self._kept_for_operators, operator_legs)
        if capacity != self._capacity:
            self._capacity = capacity
            self._emit(Capacity(capacity))

    # -- commands --------------------------------------------------------------------------------

    def _dial(self, cmd: Dial) -> None:
        if cmd.attempt_id in self._seen:  # jobs are at-least-once: never dial one attempt twice
            self._emit(DialFailed(cmd.attempt_id, "duplicate-attempt", "this worker already dialled this attempt"))
            return
        self._seen.add(cmd.attempt_id)
        uri = self._sip.uri_for(cmd.number)
        call = DialCall(self._sip.account, cmd.attempt_id, self)
        now = time.monotonic()
        leg = _Leg(
            cmd.attempt_id,
            call,
            now,
            now + self.settings.ring_timeout_s,
            contact=dict(cmd.contact),
            keys_after_answer=cmd.keys_after_answer,
        )
        self._legs[cmd.attempt_id] = leg
        prm = pj.CallOpParam(True)
        header = pj.SipHeader()
        # the attempt id on the INVITE: the PBX's CDRs and traces can be matched to the campaign's records
        header.hName, header.hValue = ATTEMPT_HEADER, cmd.attempt_id
        prm.txOption.headers.append(header)
        try:
            call.makeCall(uri, prm)
        except pj.Error as e:
            del self._legs[cmd.attempt_id]
            code = "sip-too-many-calls" if "ETOOMANY" in e.info() else "sip-dial-failed"
            self._emit(DialFailed(cmd.attempt_id, code, e.info()))
            return
        self._emit(Dialled(cmd.attempt_id, uri))

    def _hang_up(self, attempt_id: str, cancel: LocalCancel | None) -> None:
        leg = self._legs.get(attempt_id)
        if leg is None:
            return
        self._drop_operator(leg)
        if leg.disconnected:
            return
        if leg.answered_at is None:
            leg.cancel = leg.cancel or cancel
        leg.hangup_by = "local"
        _end_call(leg.call, leg.port)

    def _check_timers(self, now: float) -> None:
        for leg in list(self._legs.values()):
            if leg.disconnected or leg.hangup_by == "local":
                continue
            while leg.keys and leg.keys[0][0] <= now:
                digits = leg.keys.pop(0)[1]
                self._press(leg, digits)
                if not leg.keys and leg.hang_up_at is not None:
                    leg.hang_up_at = now + _KEY_S * len(digits)  # let pjsua finish sending them
                if not leg.keys and leg.session_after_keys:
                    leg.session_after_keys = False
                    self._start_session(leg)
            if leg.hang_up_at is not None and now >= leg.hang_up_at:
                self._hang_up(leg.attempt_id, None)
                continue
            h = leg.handoff
            if h is not None and not h.done and now >= h.deadline:
                self._handoff_failed(leg, f"the operator did not take the call within {h.request.timeout_s:g} s")
            if leg.answered_at is None and now >= leg.ring_deadline:
                self._hang_up(leg.attempt_id, LocalCancel.RING_TIMEOUT)
            elif leg.talk_deadline is not None and now >= leg.talk_deadline:
                leg.local_outcome = "max_duration"
                self._hang_up(leg.attempt_id, None)

    def _hang_up_all(self) -> None:
        for attempt_id in list(self._legs):
            self._hang_up(attempt_id, LocalCancel.ABANDONED)
        deadline = time.monotonic() + _TEARDOWN_S
        while self._legs and time.monotonic() < deadline:
            self._sip.handle_events(_POLL_MS)
            self._take_notices()
            self._reap()

    def _take_notices(self) -> None:
        while not self._notices.empty():
            kind, attempt_id, payload = self._notices.get()
            leg = self._legs.get(attempt_id)
            if kind == "ended":
                if leg is not None and leg.keys:
                    leg.hang_up_at = float("inf")  # set when the last key is pressed
                elif leg is not None and not leg.bridged:  # a bridged call ends when a person hangs up
                    self._hang_up(attempt_id, None)  # no-op for a call already hanging up
            elif kind == "handoff":
                if leg is not None:
                    self._start_handoff(leg, payload)
            elif kind == "keys":
                if leg is not None:
                    self._queue_keys(leg, payload)
            elif kind == "progress":
                nodes, turns = payload
                self._emit(ScriptProgress(attempt_id, tuple(nodes), tuple(turns)))
            elif kind == "operator-digit":
                if leg is not None:
                    self._operator_digit(leg, payload)
            else:  # closed: the session has seen its last event, and made its record
                self._closed.add(attempt_id)
                if leg is not None:
                    leg.record = payload

    def _reap(self) -> None:
        # Calls and ports are dropped here, outside their own callbacks, once
        # the session has seen the hangup (so the outcome it reports is final).
        done = [
            a for a, leg in self._legs.items() if leg.disconnected and (leg.session is None or a in self._closed) and _operator_gone(leg)
        ]
        for attempt_id in done:
            leg = self._legs.pop(attempt_id)
            self._closed.discard(attempt_id)
            _close_ports(leg)
            self._emit(self._ended_event(leg))

    # -- CallListener (SIP-owner thread) -------------------------------------------------------

    def call_state(self, call: DialCall, state: int, sip_code: int, reason: str) -> None:
        leg = self._legs.get(call.attempt_id)
        if leg is None:
            return
        if call.role == "operator":
            self._operator_state(leg, state, sip_code, reason)
            return
        now = time.monotonic()
        if sip_code:
            leg.sip_code, leg.reason = sip_code, reason
        if state == pj.PJSIP_INV_STATE_EARLY and not leg.got_response:
            leg.got_response = True  # the far end is alive (100 Trying alone changes no state)
            self._emit(Ringing(leg.attempt_id, sip_code, _ms(now - leg.dialled_at)))
        elif state == pj.PJSIP_INV_STATE_CONFIRMED and leg.answered_at is None:
            leg.answered_at = leg.final_at = now
            leg.talk_deadline = now + self.settings.max_call_duration_s
            self._emit(Answered(leg.attempt_id, _ms(now - leg.dialled_at)))
            if leg.keys_after_answer:
                # the extension first: a greeting said to the PBX's attendant would be lost on the person
                leg.session_after_keys = True
                self._queue_keys(leg, leg.keys_after_answer)
            else:
                self._start_session(leg)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            leg.final_at = leg.final_at or now
            leg.ended_at = now
            leg.disconnected = True
            if leg.port is not None:
                leg.call.disconnect_port(leg.port)
            self._drop_operator(leg)  # the customer is gone: nobody for the operator to talk to
            if leg.handoff is not None and not leg.handoff.done:
                self._handoff_failed(leg, "the customer hung up during the handoff")
            if leg.session is not None:
                ts_ms = leg.port.frames_in * self.fmt.frame_ms
                if leg.hangup_by == "remote":
                    self._sessions.post(leg.attempt_id, leg.session, RemoteHangup(ts_ms))
                else:  # a no-op for a session that ended the call itself
                    self._sessions.post(leg.attempt_id, leg.session, LocalHangup(ts_ms, leg.local_outcome))
                self._sessions.post(leg.attempt_id, leg.session, Close())

    def call_media_active(self, call: DialCall) -> None:
        leg = self._legs.get(call.attempt_id)
        if leg is None or leg.disconnected:
            return
        h = leg.handoff
        if leg.bridged and h is not None and h.operator is not None:
            call.bridge_to(leg.call if call.role == "operator" else h.operator)  # a re-INVITE replaced a stream
        elif call.role == "operator" and h is not None and h.operator_port is not None:
            call.connect_port(h.operator_port)
        elif call.role == "customer" and leg.port is not None:
            call.connect_port(leg.port)  # a re-INVITE replaced the stream: link the new one

    def call_transfer_status(self, call: DialCall, code: int, reason: str, final: bool) -> bool:
        """NOTIFYs about our REFER; returns whether to keep listening."""
        leg = self._legs.get(call.attempt_id)
        h = leg.handoff if leg is not None else None
        if h is None or h.done:
            return False
        if code >= 300 or (final and code < 200):
            self._handoff_failed(leg, f"transfer failed: {code} {reason}".strip())
            return False
        if 200 <= code < 300 and code != 202:  # 202 only says the REFER was accepted
            self._handoff_done(leg, "transferred")
            self._hang_up(leg.attempt_id, None)  # pjsua leaves the bot's leg up: the customer is with the operator now
            return False
        return True

    def call_dtmf(self, call: DialCall, digit: str) -> None:
        # pjmedia's own thread: touch no pjsua2 object here
        leg = self._legs.get(call.attempt_id)
        if call.role == "operator":
            self._notices.put(("operator-digit", call.attempt_id, digit))
            return
        if leg is None or leg.session is None or leg.port is None:
            return  # a digit before the media is up has no session time to go with
        self._sessions.post(leg.attempt_id, leg.session, Dtmf(digit, leg.port.frames_in * self.fmt.frame_ms))
        self._emit(DtmfIn(leg.attempt_id, digit))

    def call_error(self, call: DialCall, where: str, error: Exception) -> None:
        leg = self._legs.get(call.attempt_id)
        if leg is not None:
            leg.callback_errors += 1
        print(f"voicebot worker: {where} failed for attempt {call.attempt_id}: {error!r}", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)

    # -- keys out (RFC 2833) ---------------------------------------------------------------------------

    def _queue_keys(self, leg: _Leg, digits: str) -> None:
        # pjsua sends a string of digits back to back; each "," is a 500 ms pause (phone-menu convention)
        at = max([time.monotonic(), *(t for t, _ in leg.keys)])
        group = ""
        for ch in digits:
            if ch == ",":
                if group:
                    leg.keys.append((at, group))
                    group = ""
                at += _KEY_PAUSE_S
            else:
                group += ch
        if group:
            leg.keys.append((at, group))
        self._check_timers(time.monotonic())

    def _press(self, leg: _Leg, digits: str) -> None:
        try:
            leg.call.dialDtmf(digits)
        except pj.Error as e:
            print(f"voicebot worker: could not send DTMF {digits!r} on {leg.attempt_id}: {e.info()}", file=sys.stderr)

    # -- handoff to a person ------------------------------------------------------------------------

    def _start_handoff(self, leg: _Leg, request: Handoff) -> None:
        self._emit(HandoffRequested(leg.attempt_id, request.context()))
        leg.handoff = h = _HandoffState(request, time.monotonic() + request.timeout_s)
        if leg.disconnected:
            self._handoff_failed(leg, "the customer hung up before the handoff")
        elif request.mode == "transfer":
            try:
                leg.call.xfer(request.uri, pj.CallOpParam(True))
            except pj.Error as e:
                self._handoff_failed(leg, f"REFER failed: {e.info()}")
        else:
            h.operator = DialCall(self._sip.account, leg.attempt_id, self, role="operator")
            try:
                h.operator.makeCall(request.uri, pj.CallOpParam(True))
            except pj.Error as e:
                h.operator, h.operator_down = None, True
                self._handoff_failed(leg, f"could not call the operator: {e.info()}")

    def _operator_state(self, leg: _Leg, state: int, sip_code: int, reason: str) -> None:
        h = leg.handoff
        if h is None or h.operator is None:
            return
        if state == pj.PJSIP_INV_STATE_CONFIRMED and h.operator_port is None:
            prompt = _LoopedPrompt(self.fmt, h.request.briefing)
            h.operator_port = MediaPort(f"operator-{leg.attempt_id}", self.fmt, prompt.next_outbound, prompt.heard)
            if not h.operator.connect_port(h.operator_port):
                self._handoff_failed(leg, "the operator answered without audio")
            elif not h.request.warm:
                self._bridge(leg)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            h.operator_down = True
            if h.operator_port is not None:
                h.operator.disconnect_port(h.operator_port)
            if not h.done:
                result = outcomes.unanswered(sip_code, reason, got_response=True, cancel=None)
                why = f"{sip_code} {reason}" if sip_code >= 300 else "hung up before accepting"
                self._handoff_failed(leg, f"operator {result.outcome if sip_code >= 300 else 'declined'}: {why}")
            elif leg.bridged:
                self._hang_up(leg.attempt_id, None)  # the operator finished the call

    def _operator_digit(self, leg: _Leg, digit: str) -> None:
        h = leg.handoff
        if h is None or h.done or h.operator_port is None:
            return
        if digit == h.request.accept_digit:
            self._bridge(leg)
        else:
            self._handoff_failed(leg, f"the operator declined (pressed {digit})")

    def _bridge(self, leg: _Leg) -> None:
        h = leg.handoff
        assert h is not None and h.operator is not None
        if leg.disconnected:
            return
        h.operator.disconnect_port(h.operator_port)
        if leg.port is not None:
            leg.call.disconnect_port(leg.port)
        if not leg.call.bridge_to(h.operator):
            self._handoff_failed(leg, "no audio to bridge")
            return
        leg.bridged = True
        self._handoff_done(leg, "bridged")

    def _handoff_done(self, leg: _Leg, how: str) -> None:
        assert leg.handoff is not None
        leg.handoff.done = True
        leg.handoff_result = how
        self._transfer_result(leg, True)

    def _handoff_failed(self, leg: _Leg, reason: str) -> None:
        h = leg.handoff
        if h is None or h.done:
            return
        h.done = True
        leg.handoff_result = "failed"
        self._drop_operator(leg)
        print(f"voicebot worker: handoff of {leg.attempt_id} failed: {reason}", file=sys.stderr)
        self._transfer_result(leg, False, reason)

    def _transfer_result(self, leg: _Leg, ok: bool, reason: str = "") -> None:
        if leg.session is not None and not leg.disconnected:
            ts_ms = leg.port.frames_in * self.fmt.frame_ms if leg.port is not None else 0
            self._sessions.post(leg.attempt_id, leg.session, TransferResult(ok, ts_ms, reason))

    def _drop_operator(self, leg: _Leg) -> None:
        h = leg.handoff
        if h is None or h.operator is None or h.operator_down:
            return
        _end_call(h.operator, h.operator_port)

    # -- media ---------------------------------------------------------------------------------------

    def _start_session(self, leg: _Leg) -> None:
        session = self.settings.session_factory(leg.attempt_id, self.fmt, leg.contact)
        attempt_id = leg.attempt_id
        sessions = self._sessions

        def inbound(frame: bytes, ts_ms: int) -> None:  # clock thread: queue only
            sessions.post(attempt_id, session, Inbound(frame, ts_ms))

        # port first: onDtmfDigit comes from pjmedia's own thread and needs both
        leg.port = MediaPort(f"call-{attempt_id}", self.fmt, session.next_outbound, inbound)
        leg.session = session
        sessions.post(attempt_id, session, Start(0))
        if not leg.call.connect_port(leg.port):
            self._hang_up(attempt_id, None)  # answered without usable audio: nothing to say to anyone

    def _ended_event(self, leg: _Leg) -> Ended:
        end = leg.ended_at or time.monotonic()
        if leg.answered_at is not None:
            result = outcomes.answered()
        else:
            result = outcomes.unanswered(leg.sip_code, leg.reason, got_response=leg.got_response, cancel=leg.cancel)
        port = leg.port
        return Ended(
            attempt_id=leg.attempt_id,
            outcome=result.outcome,
            sip_code=result.sip_code,
            reason=result.reason,
            setup_ms=_ms((leg.final_at or end) - leg.dialled_at),
            talk_ms=_ms(end - leg.answered_at) if leg.answered_at is not None else 0,
            session_outcome=leg.session.outcome if leg.session is not None else None,
            hangup_by=leg.hangup_by,
            frames_in=port.frames_in if port else 0,
            frames_out=port.frames_out if port else 0,
            callback_errors=leg.callback_errors + (port.errors if port else 0),
            first_sound_out_ms=_since(leg.answered_at, port.first_sound_out) if port else None,
            first_sound_in_ms=_since(leg.answered_at, port.first_sound_in) if port else None,
            handoff=leg.handoff_result,
            record=leg.record,
        )

    def _emit(self, event: WorkerEvent) -> None:
        self._events.put(event)


def _end_call(call: DialCall, port: MediaPort | None) -> None:
    """Unlink our port from the call, then hang it up (SIP-owner thread)."""
    if port is not None:
        call.disconnect_port(port)
    try:
        call.hangup(pj.CallOpParam(True))
    except pj.Error:
        pass  # already terminating: DISCONNECTED follows either way


def _close_ports(leg: _Leg) -> None:
    """The leg's media ports leave the conference bridge (its calls are already unlinked from them)."""
    if leg.port is not None:
        leg.port.close()
    if leg.handoff is not None and leg.handoff.operator_port is not None:
        leg.handoff.operator_port.close()


def customer_capacity(k: int, kept: int, operator_legs: int) -> int:
    """Customer calls a worker whose pjsua takes ``k`` calls may carry.

    A bridged handoff's operator leg is a pjsua call too, held for the whole talk with the
    operator. Customers not yet handed off may still ask, so ``kept`` calls stay free for
    the next operator legs: customers + operator legs + kept <= k, unless every customer
    on the worker is already with an operator (then nobody is left to ask).
    """
    if not kept:
        return k - operator_legs
    return max(operator_legs, k - kept - operator_legs)


def _operator_gone(leg: _Leg) -> bool:
    h = leg.handoff
    return h is None or h.operator is None or h.operator_down


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _since(start: float | None, moment: float | None) -> int | None:
    return _ms(moment - start) if start is not None and moment is not None else None


def run_worker(settings: WorkerSettings, commands: PipeChannel, events: PipeChannel) -> None:
    """Process entry point: the main thread owns pjsua2 (imported in this process, never inherited)."""
    # Ctrl-C in a terminal reaches the whole process group: the manager decides what it means
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    MediaWorker(settings).run(commands, events)


class WorkerProcess:
    """A ``MediaWorker`` in its own spawned process: a crash there loses only its K calls.

    ``launch()`` starts it, ``start()`` also waits for its ``Ready``. ``process``
    has the ``multiprocessing.Process`` interface the pool uses (pid, sentinel,
    is_alive, kill, join, exitcode); ``voicebot.telephony.host.ForkedWorker``
    offers the same for a worker forked from the model host.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold pjsua2 threads
        self._settings = settings
        commands_in, commands_out = ctx.Pipe(duplex=False)
        events_in, events_out = ctx.Pipe(duplex=False)
        self.commands, self.events = PipeChannel(commands_out), PipeChannel(events_in)
        self._child_ends = (commands_in, events_out)
        self.process = self._make_process(ctx)

    def _make_process(self, ctx):  # noqa: ANN001, ANN202
        commands_in, events_out = self._child_ends
        return ctx.Process(
            target=run_worker, args=(self._settings, PipeChannel(commands_in), PipeChannel(events_out)), name="media-worker", daemon=True
        )

    def launch(self) -> None:
        self.process.start()
        for end in self._child_ends:
            end.close()  # only the worker holds them now, so its exit shows as a closed channel

    def start(self, timeout_s: float = 10.0) -> Ready:
        self.launch()
        event = self.next_event(timeout_s)
        if not isinstance(event, Ready):
            raise SipError(f"media worker did not start: {event!r}", code="sip-worker-start")
        return event

    def send(self, command: Command) -> None:
        self.commands.put(command)

    def next_event(self, timeout_s: float) -> WorkerEvent:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if time.monotonic() >= deadline or not self.process.is_alive():
                    code = self.process.exitcode
                    raise SipError(
                        f"no event from the media worker within {timeout_s} s (exit code {code})", code="sip-worker-timeout"
                    ) from None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Ask the worker to hang up and exit; kill it if it does not. Returns its exit code."""
        if self.process.is_alive():
            self.commands.put(Stop())
            self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)
        return self.process.exitcode
