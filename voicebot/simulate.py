"""Run a whole call without SIP: the customer's side comes from audio, the bot's from the real pipeline.

The same ``CallSession`` as in a real call runs tick by tick on a virtual 20 ms
clock. Customer turns are either one WAV per turn (played when the bot has
finished talking, after a reaction time, or ``@prompt+MS`` after the bot starts
a prompt, to barge in) or one WAV played as it is from the moment of answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


from voicebot.audio.frames import AudioFormat, interleave, read_wav, split_frames, write_wav
from voicebot.audio.line import telephone
from voicebot.audio.resample import resample
from voicebot.session import (
    AmdVerdict,
    BotSaid,
    CallSession,
    CustomerSaid,
    Interrupt,
    NoInput,
    PromptHeard,
    TurnLatency,
)

_CUE = re.compile(r"@prompt\+(\d+)")


@dataclass
class CustomerAudio:
    """One customer turn: its frames, and when to start it."""

    frames: list[bytes]
    delay_ms: int = 400
    cue: str = "listening"  # listening: after the bot stops talking; prompt: after the bot starts a prompt; answer: at t=0
    name: str = ""


@dataclass
class CallSimulator:
    fmt: AudioFormat
    turns: list[CustomerAudio]
    transfer_ok: bool = True  # a handoff is answered by the (simulated) operator once the handoff prompt ends
    inbound: list[bytes] = field(default_factory=list)
    outbound: list[bytes] = field(default_factory=list)

    def run(self, session: CallSession, max_ms: int = 300_000) -> int:
        """Tick until the session ends (or ``max_ms``); returns the end time in ms."""
        pending = list(self.turns)
        queue: list[bytes] = []
        cue_at: int | None = None
        was_playing = False
        replied = True  # the bot has spoken since the customer's last turn
        session.start(0)
        ts = 0
        while ts < max_ms and not session.ended:
            out = session.next_outbound(ts)
            playing = session.playout.active and not session.playout.paused
            if pending and not queue:
                turn = pending[0]
                if turn.cue == "answer":
                    cue_at = 0
                elif turn.cue == "prompt" and playing and not was_playing:
                    cue_at = ts
                elif turn.cue == "listening":
                    bot_quiet = replied and not session.playout.active and session.listening
                    cue_at = (cue_at if cue_at is not None else ts) if bot_quiet else None
                if cue_at is not None and ts - cue_at >= turn.delay_ms:
                    queue = list(turn.frames)
                    pending.pop(0)
                    cue_at = None
                    replied = False
            replied = replied or (playing and not queue)
            was_playing = playing
            if session.transfer_requested is not None and not session.playout.active:
                session.transfer_result(self.transfer_ok, ts, "" if self.transfer_ok else "simulated operator did not answer")
            frame = queue.pop(0) if queue else self.fmt.silence()
            session.on_inbound(frame, ts)
            self.inbound.append(frame)
            self.outbound.append(out)
            ts += self.fmt.frame_ms
        return ts


def load_customer_audio(path: Path, fmt: AudioFormat, reaction_ms: int = 400, line_snr_db: float | None = None) -> list[CustomerAudio]:
    """A directory of WAVs (one per turn, in name order) or one WAV played from the answer.

    ``line_snr_db``: pass the audio through a simulated phone line first (8 kHz,
    μ-law, noise that many dB below the speech).
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        if not files:
            raise FileNotFoundError(f"{path}: no .wav files")
        turns = []
        for f in files:
            m = _CUE.search(f.stem)
            frames = _frames(f, fmt, line_snr_db, seed=len(turns))
            turns.append(CustomerAudio(frames, int(m.group(1)) if m else reaction_ms, "prompt" if m else "listening", f.name))
        return turns
    return [CustomerAudio(_frames(path, fmt, line_snr_db, seed=0), 0, "answer", path.name)]


def _frames(path: Path, fmt: AudioFormat, line_snr_db: float | None, seed: int) -> list[bytes]:
    pcm, rate = read_wav(path)
    if line_snr_db is not None:
        pcm, rate = telephone(pcm, rate, line_snr_db, seed), 8000
    return list(split_frames(resample(pcm, rate, fmt.rate_hz), fmt))


@dataclass
class SimulationReport:
    outcome: str | None
    path: list[str]
    slots: dict[str, str]
    duration_ms: int
    turns: list[dict]
    prompts: list[dict]
    interruptions: list[dict]
    events: list[dict]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


def report(session: CallSession, duration_ms: int) -> SimulationReport:
    latencies = {(e.node, e.decision_ms): e for e in session.log if isinstance(e, TurnLatency)}
    turns = []
    for e in session.log:
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
    prompts = [asdict(e) for e in session.log if isinstance(e, PromptHeard)]
    interruptions = [asdict(e) for e in session.log if isinstance(e, Interrupt)]
    kinds = (BotSaid, AmdVerdict, NoInput)
    events = [{"type": type(e).__name__, **asdict(e)} for e in session.log if isinstance(e, kinds)]
    res = session.engine.result()
    return SimulationReport(session.result_outcome, res.path, res.slots, duration_ms, turns, prompts, interruptions, events)


def write_outputs(sim: CallSimulator, rep: SimulationReport, out_dir: Path, rate_hz: int) -> tuple[Path, Path]:
    """Stereo WAV (customer left, bot right) and the JSON log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wav = out_dir / "call.wav"
    write_wav(wav, interleave(b"".join(sim.inbound), b"".join(sim.outbound)), rate_hz, channels=2)
    log = out_dir / "call.json"
    log.write_text(rep.to_json(), encoding="utf-8")
    return wav, log


def simulate_call(
    session: CallSession, customer: list[CustomerAudio], out_dir: Path | None = None, max_ms: int = 300_000
) -> tuple[SimulationReport, CallSimulator]:
    sim = CallSimulator(session.fmt, customer)
    duration = sim.run(session, max_ms)
    rep = report(session, duration)
    if out_dir is not None:
        write_outputs(sim, rep, out_dir, session.fmt.rate_hz)
    return rep, sim


