"""Run a whole call without SIP: the customer's side comes from audio, the bot's from the real pipeline.

The same ``CallSession`` as in a real call runs tick by tick on a virtual 20 ms
clock. Customer turns are either one WAV per turn (played when the bot has
finished talking, after a reaction time, or ``@prompt+MS`` after the bot starts
a prompt, to barge in) or one WAV played as it is from the moment of answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.audio.frames import AudioFormat, read_wav, split_frames, write_stereo
from voicebot.audio.line import telephone
from voicebot.audio.resample import resample
from voicebot.session import CallReport, CallSession

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
    transfer_ok: bool = True  # a handoff is answered by the (simulated) operator
    operator_delay_ms: int = 0  # after the handoff prompt: how long the customer waits (hears the hold prompt)
    inbound: list[bytes] = field(default_factory=list)
    outbound: list[bytes] = field(default_factory=list)

    def run(self, session: CallSession, max_ms: int = 300_000, at: str | None = None, until: Callable[[], bool] | None = None) -> int:
        """Tick until the session ends (or ``max_ms``, or ``until()`` turns true after a tick); returns the
        end time in ms. ``at``: start the conversation at this node instead of the script's start."""
        pending = list(self.turns)
        queue: list[bytes] = []
        cue_at: int | None = None
        was_playing = False
        replied = True  # the bot has spoken since the customer's last turn
        handoff_at: int | None = None
        if at is None:
            session.start(0)
        else:
            session.start(0, at=at)
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
            if session.handoff_due:
                session.take_handoff()
                handoff_at = ts
            if handoff_at is not None and ts - handoff_at >= self.operator_delay_ms:
                handoff_at = None
                session.transfer_result(self.transfer_ok, ts, "" if self.transfer_ok else "simulated operator did not answer")
            frame = queue.pop(0) if queue else self.fmt.silence()
            session.on_inbound(frame, ts)
            self.inbound.append(frame)
            self.outbound.append(out)
            ts += self.fmt.frame_ms
            if until is not None and until():
                break
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


def write_outputs(sim: CallSimulator, rep: CallReport, out_dir: Path, rate_hz: int) -> tuple[Path, Path]:
    """Stereo WAV (customer left, bot right) and the JSON log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wav = out_dir / "call.wav"
    write_stereo(wav, b"".join(sim.inbound), b"".join(sim.outbound), rate_hz)
    log = out_dir / "call.json"
    log.write_text(rep.to_json(), encoding="utf-8")
    return wav, log


def simulate_call(
    session: CallSession, customer: list[CustomerAudio], out_dir: Path | None = None, max_ms: int = 300_000
) -> tuple[CallReport, CallSimulator]:
    sim = CallSimulator(session.fmt, customer)
    duration = sim.run(session, max_ms)
    rep = session.report(duration)
    if out_dir is not None:
        write_outputs(sim, rep, out_dir, session.fmt.rate_hz)
    return rep, sim
