"""One call: where audio, speech and the script meet, and nowhere else.

The media side calls two methods every 20 ms:

- ``next_outbound(ts_ms)``: the frame to send (prompt audio or silence). Cheap:
  it only slices bytes, so the telephony clock thread may call it.
- ``on_inbound(frame, ts_ms)``: a frame from the person. Runs voice detection,
  answering-machine detection, barge-in, recognition and end-of-turn, feeds
  the script engine and queues the prompts it asks for.

The session never decides what to say (the engine does) and never touches SIP:
transfers, hangups and DTMF-out are requests the telephony layer picks up.
Every timing the targets care about (end of speech → first bot frame, barge-in
stop delay, how much of each prompt was heard) is recorded in ``log``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from voicebot.audio.amd import AmdResult, AnsweringMachineDetector, BeepDetector
from voicebot.audio.bargein import BargeInDetector, Interruption, backchannel_phrases, backchannel_words
from voicebot.audio.endpoint import EndOfTurn, Endpointer
from voicebot.audio.frames import AudioFormat
from voicebot.audio.playout import PlaybackFinished, PlaybackStarted, Playout
from voicebot.audio.vad import SpeechSegmenter, SpeechStarted, SpeechStopped, VoiceDetector
from voicebot.script.engine import (
    Action,
    BargeIn,
    CallerHangup,
    Dtmf,
    Hangup,
    Heard,
    Listen,
    PromptDone,
    Say,
    ScriptEngine,
    SendDtmf,
    Silence,
    Transfer,
    TransferResult,
)
from voicebot.script.graph import ScriptGraph
from voicebot.script.intents import function_words
from voicebot.script.templates import render
from voicebot.speech.asr import AsrResult, AsrStream

_COMPLETE_SCORE = 0.9  # a partial this close to an expected answer may end the turn early
_PREROLL_MS = 400  # audio kept from before speech was confirmed, so ASR hears the onset
# Audio before the first voiced frame that still goes to ASR: the VAD misses unvoiced onsets ("h" of
# "how much"), and Whisper without them heard "How much does it cost" as "I must earn it, God".
_ONSET_LEAD_MS = 100
_HOLD_PAUSE_MS = 4000  # between repeats of the hold prompt
# Voiced time over a paused prompt at which a recogniser is asked for words (its partial, or a
# decode for one without partials): before the barge-in detector gives up on words and resumes.
_BARGE_IN_PEEK_MS = (400, 700)


class PromptSource(Protocol):
    """Prompt audio at the call's rate (``PromptCache`` in production)."""

    def get(self, text: str, rate_hz: int) -> bytes: ...

    def get_wav(self, wav: Path, rate_hz: int) -> bytes: ...


# --- what the session records (a closed set) -------------------------------------------------


@dataclass(frozen=True)
class BotSaid:
    ts_ms: int
    prompt_id: str
    text: str | None


@dataclass(frozen=True)
class PromptHeard:
    ts_ms: int
    prompt_id: str
    played_ms: int
    total_ms: int
    interrupted: bool


@dataclass(frozen=True)
class Interrupt:
    ts_ms: int
    kind: str  # pause | resume | stop
    prompt_id: str | None
    onset_ms: int | None  # when the person started speaking
    words: str = ""


@dataclass(frozen=True)
class CustomerSaid:
    ts_ms: int
    node: str
    text: str
    confidence: float
    end_reason: str
    last_voice_ms: int
    decision_ms: int  # when end of turn was decided
    compute_ms: float  # wall time to flush ASR, run the engine and fetch prompts


@dataclass(frozen=True)
class TurnLatency:
    node: str
    decision_ms: int
    last_voice_ms: int
    bot_audio_ms: int  # first frame of the reply on the wire

    @property
    def turn_ms(self) -> int:
        return self.bot_audio_ms - self.decision_ms

    @property
    def voice_to_voice_ms(self) -> int:
        return self.bot_audio_ms - self.last_voice_ms


@dataclass(frozen=True)
class AmdVerdict:
    ts_ms: int
    kind: str
    reason: str


@dataclass(frozen=True)
class NoInput:
    ts_ms: int
    node: str


@dataclass(frozen=True)
class KeysPressed:
    ts_ms: int
    node: str
    digits: str


@dataclass(frozen=True)
class HandoffStarted:
    ts_ms: int
    operator: str
    mode: str
    node: str


@dataclass(frozen=True)
class HandoffEnded:
    ts_ms: int
    ok: bool
    reason: str


SessionEvent = (
    BotSaid | PromptHeard | Interrupt | CustomerSaid | TurnLatency | AmdVerdict | NoInput | KeysPressed | HandoffStarted | HandoffEnded
)


@dataclass(frozen=True)
class Handoff:
    """A call to hand to a person: where to, how, and what the operator side is told.

    ``context()`` is what the operator's screen shows (published on the bus;
    logged until then). The audio is PCM at the call's rate: the spoken
    briefing for the operator (warm bridge only) and the customer's hold prompt
    (bridge only).
    """

    operator: str
    uri: str
    mode: str  # transfer | bridge
    warm: bool
    accept_digit: str
    timeout_s: float
    node: str
    contact: dict[str, str]
    transcript: list[dict[str, str]]
    briefing_text: str
    briefing: bytes = b""
    hold: bytes = b""

    def context(self) -> dict:
        return {
            "operator": self.operator,
            "uri": self.uri,
            "mode": self.mode,
            "warm": self.warm,
            "node": self.node,
            "contact": self.contact,
            "transcript": self.transcript,
            "briefing": self.briefing_text,
        }


@dataclass
class CallReport:
    """What happened in one call, as the call log and `voicebot simulate` write it (JSON)."""

    outcome: str | None
    path: list[str]
    slots: dict[str, str]
    duration_ms: int
    turns: list[dict]
    prompts: list[dict]
    interruptions: list[dict]
    events: list[dict]
    transcript: list[dict]  # who said what, in order
    handoff: dict | None = None  # the context handed to the operator, and how it went
    # what the script engine made of each thing the person did (intent, score, no_match, no_input...):
    # the record script analytics read
    decisions: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


@dataclass
class SessionSettings:
    fmt: AudioFormat
    vad_aggressiveness: int = 2
    min_level_dbfs: float = -50.0
    speech_start_ms: int = 100
    speech_end_ms: int = 300
    end_of_turn_ms: int = 600
    complete_end_of_turn_ms: int = 240
    max_turn_ms: int = 15000
    barge_in_confirm_ms: int = 900
    answer_tail_ms: int = 800
    backchannels: tuple[str, ...] = ()  # phrases; also offered to the recogniser while it listens
    detect_voicemail: bool = True
    voicemail_greeting_max_ms: int = 2400
    voicemail_message: str | None = None

    @classmethod
    def from_dialplan(cls, graph: ScriptGraph) -> SessionSettings:
        speech = graph.dialplan.speech
        tt = speech.turn_taking
        vm = graph.dialplan.voicemail
        return cls(
            fmt=AudioFormat(speech.rate_hz),
            vad_aggressiveness=tt.vad_aggressiveness,
            min_level_dbfs=tt.min_level_dbfs,
            speech_start_ms=tt.speech_start_ms,
            speech_end_ms=tt.speech_end_ms,
            end_of_turn_ms=tt.end_of_turn_ms,
            complete_end_of_turn_ms=tt.complete_end_of_turn_ms,
            max_turn_ms=tt.max_turn_ms,
            barge_in_confirm_ms=tt.barge_in_confirm_ms,
            answer_tail_ms=tt.answer_tail_ms,
            backchannels=backchannel_phrases(speech.language, tt.backchannels),
            detect_voicemail=vm.detect,
            voicemail_greeting_max_ms=vm.greeting_max_ms,
            voicemail_message=vm.message.text if vm.message else None,
        )


class VoicemailDrop:
    """After a machine answered: the message goes out after the beep, or once the greeting has gone quiet."""

    QUIET_MS = 1500  # some machines never beep

    def __init__(self, fmt: AudioFormat, heard_beep: bool = False) -> None:
        self.fmt = fmt
        self._beep = BeepDetector(fmt)
        self._heard_beep = heard_beep
        self._quiet_ms = 0

    def ready(self, frame: bytes, voiced: bool) -> bool:
        if self._heard_beep or self._beep.process(frame):
            self._heard_beep = True
            return not voiced  # the beep has ended: the recording is on
        self._quiet_ms = 0 if voiced else self._quiet_ms + self.fmt.frame_ms
        return self._quiet_ms >= self.QUIET_MS


@dataclass
class _Turn:
    onset_ms: int
    partial: str = ""
    complete: bool = False
    peeked_ms: int = 0  # voiced time of the last peek a pending barge-in asked for


@dataclass(frozen=True)
class _HeldTurn:
    """An answer heard before the answering-machine verdict: acted on only once a person is sure."""

    text: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...] = ()
    second_opinion: Callable[[], tuple[tuple[str, float], ...]] | None = None


class CallSession:
    """One call's audio ↔ speech ↔ script loop. Build per call; not thread-safe except ``next_outbound``."""

    def __init__(
        self,
        graph: ScriptGraph,
        asr: AsrStream,
        prompts: PromptSource,
        contact: Mapping[str, object] | None = None,
        settings: SessionSettings | None = None,
        detector: VoiceDetector | None = None,
        record: bool = False,
        on_end: Callable[[CallSession], None] | None = None,
    ) -> None:
        self.graph = graph
        self.settings = s = settings or SessionSettings.from_dialplan(graph)
        self.fmt = s.fmt
        self.asr = asr
        self.prompts = prompts
        self.engine = ScriptEngine(graph, contact)
        self._nodes_told = self._turns_told = 0  # what take_progress() has handed out
        self.playout = Playout(s.fmt)
        self.detector = detector or VoiceDetector(s.fmt, s.vad_aggressiveness, s.min_level_dbfs)
        self.segmenter = SpeechSegmenter(s.speech_start_ms, s.speech_end_ms, s.fmt.frame_ms)
        self.bargein = BargeInDetector(
            backchannel_words(s.backchannels), s.barge_in_confirm_ms, s.answer_tail_ms, function_words=function_words(graph.language)
        )
        self.endpointer = Endpointer(s.end_of_turn_ms, s.complete_end_of_turn_ms, s.max_turn_ms, s.fmt.frame_ms)
        self.amd = AnsweringMachineDetector(s.fmt, greeting_max_ms=s.voicemail_greeting_max_ms) if s.detect_voicemail else None
        self.log: list[SessionEvent] = []
        self.outcome: str | None = None  # set when the call should end (after playout drains)
        self.transfer_requested: Transfer | None = None
        self.ended = False
        self._handoff: Handoff | None = None  # the latest one, kept for the report
        self._handing_off = False  # between take_handoff() and transfer_result()
        self._handoff_result: HandoffEnded | None = None
        self._hold_next_ms: int | None = None  # when to say the hold prompt again
        self._now_ms = 0
        self._keys_after_prompts: list[tuple[str | None, str]] = []  # (prompt to finish first, digits)
        self.keys_due: list[str] = []  # digits for the line now: the telephony side takes them
        self._preroll: deque[tuple[int, bytes]] = deque(maxlen=_PREROLL_MS // s.fmt.frame_ms)
        self._capturing = False  # frames go to ASR
        self._turn: _Turn | None = None
        self._listening: Listen | None = None
        self._idle_since: int | None = None  # listening, nothing playing, nobody speaking
        self._barge_in: dict[str, bool] = {}
        self._awaiting_reply: EndOfTurn | None = None
        self._held_turn: _HeldTurn | None = None  # heard while the answering-machine verdict is open
        self._awaiting_node = ""
        self._voicemail: VoicemailDrop | None = None
        # the recording: what the person sent and what the bot sent, frame by frame
        self._recorded: tuple[bytearray, bytearray] | None = (bytearray(), bytearray()) if record else None
        # the clock thread appends the bot's side while the session thread may copy both out
        self._recording_lock = threading.Lock()
        self._on_end = on_end
        self._end_reported = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, ts_ms: int = 0, at: str | None = None) -> None:
        """The call was answered: queue the greeting at once (or the question of node ``at``)."""
        self._execute(self.engine.start(at), ts_ms)

    def dtmf(self, digit: str, ts_ms: int) -> None:
        if not self.ended and self.outcome is None:
            self._execute(self.engine.handle(Dtmf(digit)), ts_ms)

    @property
    def progress_due(self) -> bool:
        """The script entered a node or decided on something the person did since ``take_progress()``."""
        return len(self.engine.path) > self._nodes_told or len(self.engine.turns) > self._turns_told

    def take_progress(self) -> tuple[list[str], list[dict]]:
        """Nodes entered and the engine's decisions since the last call: the call's live events."""
        nodes = list(self.engine.path[self._nodes_told :])
        turns = [asdict(t) for t in self.engine.turns[self._turns_told :]]
        self._nodes_told, self._turns_told = len(self.engine.path), len(self.engine.turns)
        return nodes, turns

    @property
    def handoff_due(self) -> bool:
        """The script asked for a person and its handoff prompt has been played out."""
        return self.transfer_requested is not None and not self._handing_off and not self.playout.active

    def take_handoff(self) -> Handoff:
        """The handoff to carry out now (once per request). Renders the briefing and hold
        prompts, which may synthesise speech: call it off the media clock."""
        t = self.transfer_requested
        assert t is not None, "no transfer was requested"
        op = self.graph.dialplan.operators[t.operator]
        res = self.engine.result()
        said = [text for who, text in res.transcript if who == "customer"]
        values = {**self.engine.values(), "node": t.node, "last_words": said[-1] if said else "", "accept_digit": op.accept_digit}
        text = render(op.briefing, values, f"operators.{t.operator}.briefing")
        bridge = t.mode == "bridge"
        handoff = Handoff(
            t.operator,
            t.uri,
            t.mode,
            t.warm,
            op.accept_digit,
            op.timeout_s,
            t.node,
            {k: str(v) for k, v in self.engine.values().items()},
            [{"speaker": who, "text": said_text} for who, said_text in res.transcript],
            text,
            briefing=self.prompts.get(text, self.fmt.rate_hz) if bridge and t.warm else b"",
            hold=self.prompts.get(render(op.hold, values, f"operators.{t.operator}.hold"), self.fmt.rate_hz) if bridge else b"",
        )
        self._handoff, self._handing_off = handoff, True
        self.log.append(HandoffStarted(self._now_ms, t.operator, t.mode, t.node))
        if handoff.hold:
            self._hold_next_ms = self._now_ms
        return handoff

    def transfer_result(self, ok: bool, ts_ms: int, reason: str = "") -> None:
        self.transfer_requested = None
        self._hold_next_ms = None
        self.playout.clear(ts_ms)  # the hold prompt, if any: not part of the script
        self.playout.take_events()
        if self._handing_off:
            self._handoff_result = HandoffEnded(ts_ms, ok, reason)
            self.log.append(self._handoff_result)
        self._handing_off = False
        self._execute(self.engine.handle(TransferResult(ok, reason)), ts_ms)
        if ok:
            self.outcome = self.engine.outcome
            self._maybe_end(ts_ms)  # the person is with the operator: this session is done

    def remote_hangup(self, ts_ms: int) -> None:
        for done in self.playout.clear(ts_ms):
            self._prompt_finished(done)
        self.engine.handle(CallerHangup())
        if self.outcome is None:
            self.outcome = self.engine.outcome
        self._end()

    def local_hangup(self, ts_ms: int, outcome: str) -> None:
        """The bot's side closed the line before the script finished (max call duration, campaign stop)."""
        if self.ended:
            return
        for done in self.playout.clear(ts_ms):
            self._prompt_finished(done)
        if self.outcome is None:
            self.outcome = self.engine.outcome or outcome
        self._end()

    @property
    def listening(self) -> bool:
        """The script waits for the person (whether or not a prompt still plays)."""
        return self._listening is not None and self.outcome is None

    @property
    def result_outcome(self) -> str | None:
        return "voicemail" if self._voicemail is not None else (self.outcome or self.engine.outcome)

    # -- the media tick ---------------------------------------------------------------------------

    def next_outbound(self, ts_ms: int) -> bytes:
        frame = self.playout.read_frame(ts_ms)
        self.detector.note_played(frame)
        if self._recorded is not None:
            with self._recording_lock:
                self._recorded[1].extend(frame)
        return frame

    def recording(self) -> tuple[bytes, bytes]:
        """(what the person said, what the bot said) as PCM at the call's rate; empty when not recording."""
        if self._recorded is None:
            return b"", b""
        with self._recording_lock:
            return bytes(self._recorded[0]), bytes(self._recorded[1])

    def on_inbound(self, frame: bytes, ts_ms: int) -> None:
        self._now_ms = ts_ms
        if self._recorded is not None:
            with self._recording_lock:
                self._recorded[0].extend(frame)
        if self._hold_next_ms is not None:
            self._hold_tick(ts_ms)
            return
        self._playback_events(ts_ms)
        if self.ended:
            return
        voiced = self.detector.is_voice(frame)
        self._preroll.append((ts_ms, frame))
        if self.amd is not None and self.amd.result is None:
            verdict = self.amd.process(frame, voiced)
            if verdict:
                self._amd(verdict, ts_ms)
        if self._voicemail is not None:
            self._voicemail_tick(frame, voiced, ts_ms)
            return
        event = self.segmenter.process(voiced, ts_ms)
        if voiced:
            self.bargein.voiced(self.fmt.frame_ms)
        if isinstance(event, SpeechStarted):
            self._speech_started(event, ts_ms)
        if self._capturing:
            self._recognise(frame, ts_ms)
        if isinstance(event, SpeechStopped):
            if self._capturing:  # a pause: an utterance-at-once recogniser tells its words now
                self._take_partial(self.asr.peek())
                if self.bargein.pending and self._turn is not None:  # the words decide before the pause does
                    self._interrupt(self.bargein.heard(self._turn.partial, self.playout.remaining_ms()), ts_ms)
            self._interrupt(self.bargein.speech_stopped(self.playout.remaining_ms()), ts_ms)
        self._interrupt(self.bargein.tick(ts_ms), ts_ms)
        if self.endpointer.in_turn and self._turn is not None:
            end = self.endpointer.process(voiced, ts_ms, self._turn.complete)
            if end:
                self._end_of_turn(end, ts_ms)
        self._no_input(ts_ms)
        self._maybe_end(ts_ms)

    # -- speech -------------------------------------------------------------------------------------

    def _speech_started(self, event: SpeechStarted, ts_ms: int) -> None:
        if self._listening is None or self.outcome is not None:
            return  # nobody is listening (goodbye, handoff): speech is not a turn
        if self._capturing and self._turn is not None:
            # the person goes on after a pause ("I am busy right now, ... sorry"): the same turn. Starting
            # a new capture here reset the recogniser and dropped every word said before the pause.
            return
        current = self.playout.current
        if current is not None:
            allowed = self._barge_in.get(current[0], True)
            if self.bargein.speech_started(event.onset_ms, prompt_playing=not self.playout.paused, allowed=allowed):
                self.playout.pause()
                self.log.append(Interrupt(ts_ms, "pause", current[0], event.onset_ms))
                self._begin_capture(event.onset_ms, hints=True)
            return
        self._begin_capture(event.onset_ms)
        self.endpointer.begin(event.onset_ms)
        self._idle_since = None

    def _begin_capture(self, onset_ms: int, hints: bool = False) -> None:
        self.asr.reset()
        # a paused prompt waits on words: a recogniser that decodes only whole utterances makes nothing of
        # a lone "stop," before a pause, so a streaming pass runs until the barge-in is decided
        self.asr.want_hints(hints)
        self._turn = _Turn(onset_ms)
        self._capturing = True
        for ts, frame in self._preroll:
            if ts >= onset_ms - _ONSET_LEAD_MS:
                self._push(frame)

    def _recognise(self, frame: bytes, ts_ms: int) -> None:
        self._push(frame)
        if self.bargein.pending and self._turn is not None:
            # the prompt is paused until words decide: ask a recogniser without partials for them
            due = [ms for ms in _BARGE_IN_PEEK_MS if ms > self._turn.peeked_ms]
            if not self._turn.partial and due and self.bargein.speech_ms >= due[0]:
                self._turn.peeked_ms = due[0]
                self._take_partial(self.asr.peek())
            self._interrupt(self.bargein.heard(self._turn.partial, self.playout.remaining_ms()), ts_ms)

    def _push(self, frame: bytes) -> None:
        for result in self.asr.push(frame):  # each result is the whole utterance so far
            self._take_partial(result)

    def _take_partial(self, result: AsrResult) -> None:
        # a hint (a grammar pass's partial) gives words to weigh a barge-in with, never a complete answer
        words = result.text or (result.alternatives[0][0] if result.alternatives else "")
        if self._turn is not None and words and words != self._turn.partial:
            self._turn.partial = words
            self._turn.complete = bool(result.text) and self._is_complete(result.text)

    def _is_complete(self, text: str) -> bool:
        if self._listening is None:
            return False
        matcher = self.graph.nodes[self._listening.node].matcher
        found = matcher.match(text) if matcher else None
        return bool(found and found.score >= _COMPLETE_SCORE)

    def _interrupt(self, decision: Interruption | None, ts_ms: int) -> None:
        if decision is None:
            return
        current = self.playout.current
        prompt_id = current[0] if current else None
        words = self._turn.partial if self._turn else ""
        self.asr.want_hints(False)
        self.log.append(Interrupt(ts_ms, decision.value, prompt_id, self._turn.onset_ms if self._turn else None, words))
        if decision is Interruption.RESUME:
            self.playout.resume()
            self._capturing = False
            self._turn = None
            self.asr.reset()
            return
        # STOP: the prompt is over and the person has the turn that began at the onset
        for done in self.playout.clear(ts_ms):
            if done.played_ms < done.total_ms:
                self.engine.handle(BargeIn(done.prompt_id, done.played_ms))
            self._prompt_finished(done)
        if self._turn is not None:
            # the silence that ends this turn counts from the person's last voice: counted from the onset, a
            # pause after "stop," ended the turn before the words that followed it
            self.endpointer.begin(self._turn.onset_ms, self.segmenter.last_voice_ms)

    def _end_of_turn(self, end: EndOfTurn, ts_ms: int) -> None:
        started = time.perf_counter()
        final = self.asr.flush()
        turn = self._turn
        # an empty final with a partial left means the engine lost the tail: trust the partial half-way
        # (not a grammar pass's partial when the open-vocabulary pass heard nothing: the script weighs that)
        text = final.text or ("" if final.alternatives or not turn else turn.partial)
        self._capturing = False
        self._turn = None
        node = self._listening.node if self._listening else ""
        confidence = final.confidence if final.text else (0.0 if final.alternatives else 0.5)
        if self.amd is not None and self.amd.result is None:
            # Who answered is not known yet: an answering machine's "is not available" must not
            # end the call as not_interested. The answer waits for the verdict (a few seconds).
            held = self._held_turn if self._held_turn is not None and self._held_turn.text else None
            if held is not None and not text:
                pass  # nothing more was made out: the words held so far stand as they were
            else:
                # a turn of nothing made out (a clipped "stop,") does not drag the words after it to 0 confidence
                self._held_turn = _HeldTurn(
                    f"{held.text} {text}" if held else text,
                    min(held.confidence, confidence) if held else confidence,
                    () if held else final.alternatives,
                    None if held else final.second_opinion,
                )
        else:
            self._execute(self.engine.handle(Heard(text, confidence, final.alternatives, final.second_opinion)), ts_ms)
        compute_ms = (time.perf_counter() - started) * 1000
        self.log.append(CustomerSaid(ts_ms, node, text, final.confidence, end.reason, end.last_voice_ms, end.ts_ms, round(compute_ms, 2)))
        self._awaiting_reply, self._awaiting_node = end, node

    def _no_input(self, ts_ms: int) -> None:
        if self._listening is None or self.outcome is not None:
            self._idle_since = None
            return
        busy = self.playout.active or self.endpointer.in_turn or self.bargein.pending or self.segmenter.speaking
        if busy:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = ts_ms
        elif ts_ms - self._idle_since >= self._listening.no_input_timeout_s * 1000:
            self._idle_since = None
            self.log.append(NoInput(ts_ms, self._listening.node))
            self._execute(self.engine.handle(Silence()), ts_ms)

    def _hold_tick(self, ts_ms: int) -> None:
        # waiting for the operator: the hold prompt, then a pause, again; nothing else runs
        assert self._handoff is not None and self._hold_next_ms is not None
        self.playout.take_events()
        if not self.playout.active and ts_ms >= self._hold_next_ms:
            self.playout.play("handoff#hold", self._handoff.hold)
            self._hold_next_ms = ts_ms + self.fmt.ms(len(self._handoff.hold)) + _HOLD_PAUSE_MS

    # -- answering machines -------------------------------------------------------------------------

    def _amd(self, verdict: AmdResult, ts_ms: int) -> None:
        self.log.append(AmdVerdict(ts_ms, verdict.kind, verdict.reason))
        held, self._held_turn = self._held_turn, None
        if verdict.kind != "machine" or self.engine.turns:
            # a person (or not sure, which counts as one), or someone already answered the script
            if held is not None and self.outcome is None and self._voicemail is None:
                self._execute(self.engine.handle(Heard(held.text, held.confidence, held.alternatives, held.second_opinion)), ts_ms)
            return
        for done in self.playout.clear(ts_ms):
            self._prompt_finished(done)
        self._listening = None
        self._capturing = False
        self._voicemail = VoicemailDrop(self.fmt, heard_beep=verdict.reason == "beep")

    def _voicemail_tick(self, frame: bytes, voiced: bool, ts_ms: int) -> None:
        assert self._voicemail is not None
        if self.outcome is None and self._voicemail.ready(frame, voiced):
            if self.settings.voicemail_message:
                text = render(self.settings.voicemail_message, self.engine.values(), "voicemail message")
                self._play("voicemail", text, None, ts_ms)
            self.outcome = "voicemail"
        self._maybe_end(ts_ms)

    # -- actions ----------------------------------------------------------------------------------------

    def _execute(self, actions: list[Action], ts_ms: int) -> None:
        for action in actions:
            if isinstance(action, Say):
                self._barge_in[action.prompt_id] = action.barge_in
                self._play(action.prompt_id, action.text, action.wav, ts_ms)
            elif isinstance(action, Listen):
                self._listening = action
                self._idle_since = None
                self.asr.set_vocabulary([*action.vocabulary, *self.settings.backchannels] if action.vocabulary else None)
            elif isinstance(action, Transfer):
                self._listening = None
                self.transfer_requested = action
            elif isinstance(action, Hangup):
                self._listening = None
                self.outcome = action.outcome
            elif isinstance(action, SendDtmf):
                self._keys_after_prompts.append((self.playout.last_queued, action.digits))
                self.log.append(KeysPressed(ts_ms, action.node, action.digits))

    def _play(self, prompt_id: str, text: str | None, wav: Path | None, ts_ms: int) -> None:
        pcm = self.prompts.get_wav(wav, self.fmt.rate_hz) if wav is not None else self.prompts.get(text or "", self.fmt.rate_hz)
        self.playout.play(prompt_id, pcm)
        self.log.append(BotSaid(ts_ms, prompt_id, text))

    def _playback_events(self, ts_ms: int) -> None:
        for event in self.playout.take_events():
            if isinstance(event, PlaybackStarted) and self._awaiting_reply is not None:
                end = self._awaiting_reply
                self.log.append(TurnLatency(self._awaiting_node, end.ts_ms, end.last_voice_ms, event.ts_ms))
                self._awaiting_reply = None
            elif isinstance(event, PlaybackFinished):
                self._prompt_finished(event)

    def _prompt_finished(self, done: PlaybackFinished) -> None:
        self._release_keys(done.prompt_id)
        self.log.append(PromptHeard(done.ts_ms, done.prompt_id, done.played_ms, done.total_ms, done.interrupted))
        self.engine.handle(PromptDone(done.prompt_id, done.played_ms, done.interrupted))

    def _release_keys(self, finished: str | None = None) -> None:
        # keys go out once the prompts queued before them have played (a menu waits for "press 1")
        while self._keys_after_prompts:
            after, digits = self._keys_after_prompts[0]
            if after is not None and after != finished and self.playout.active:
                break
            self.keys_due.append(digits)
            self._keys_after_prompts.pop(0)
            finished = None if after == finished else finished

    def take_keys(self) -> str:
        """Digits to press on the line now (RFC 2833), in order; "" when there are none."""
        keys, self.keys_due = "".join(self.keys_due), []
        return keys

    def _maybe_end(self, ts_ms: int) -> None:
        self._release_keys()
        # Hang up only once the goodbye has been played out.
        if self.outcome is not None and self.transfer_requested is None and not self.playout.active:
            self._end()

    def _end(self) -> None:
        self.ended = True
        if self._on_end is not None and not self._end_reported:
            self._end_reported = True
            self._on_end(self)

    def report(self, duration_ms: int) -> CallReport:
        latencies = {(e.node, e.decision_ms): e for e in self.log if isinstance(e, TurnLatency)}
        turns = []
        for e in self.log:
            if isinstance(e, CustomerSaid):
                lat = latencies.get((e.node, e.decision_ms))
                turns.append(
                    {
                        "node": e.node,
                        "text": e.text,
                        "confidence": round(e.confidence, 3),
                        "end_reason": e.end_reason,
                        "speech_end_ms": e.last_voice_ms,
                        "decision_ms": e.decision_ms,
                        "bot_audio_ms": lat.bot_audio_ms if lat else None,
                        "end_of_speech_to_bot_audio_ms": lat.voice_to_voice_ms if lat else None,
                        "decision_to_bot_audio_ms": lat.turn_ms if lat else None,
                        "compute_ms": e.compute_ms,
                    }
                )
        prompts = [asdict(e) for e in self.log if isinstance(e, PromptHeard)]
        interruptions = [asdict(e) for e in self.log if isinstance(e, Interrupt)]
        kinds = (BotSaid, AmdVerdict, NoInput, KeysPressed, HandoffStarted, HandoffEnded)
        events = [{"type": type(e).__name__, **asdict(e)} for e in self.log if isinstance(e, kinds)]
        res = self.engine.result()
        transcript = [{"speaker": who, "text": text} for who, text in res.transcript]
        handoff = None
        if self._handoff is not None:
            handoff = self._handoff.context()
            if self._handoff_result is not None:
                handoff.update(ok=self._handoff_result.ok, reason=self._handoff_result.reason)
        decisions = [asdict(t) for t in res.turns]
        return CallReport(
            self.result_outcome,
            res.path,
            res.slots,
            duration_ms,
            turns,
            prompts,
            interruptions,
            events,
            transcript,
            handoff,
            decisions,
        )
