"""A scripted customer: spoken answers laid out on a timeline that fits the bot's script.

A SIP peer such as baresip plays one WAV from the moment it answers; it cannot
wait for the bot to finish a question. So the answers are placed where the bot
will be listening: the real ``CallSession`` (same prompts, same contact, same
speech engines) is run once on the simulator's virtual clock with the answers
cued ``reaction_ms`` after each prompt ends, and the customer's side of that
simulated call becomes the WAV. A generous reaction time absorbs the few tens of
milliseconds a real call runs behind the virtual clock.

After the last answer the track can go on with ``after`` (speech heard by
whoever the call is handed to) and always ends in ``tail_ms`` of silence, so
the peer stays on the line until the bot has said goodbye and hung up.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio.frames import AudioFormat, split_frames, write_wav
from voicebot.audio.line import telephone
from voicebot.audio.resample import resample
from voicebot.session import CallReport, CallSession
from voicebot.simulate import CallSimulator, CustomerAudio
from voicebot.speech.tts import EspeakTts


@dataclass(frozen=True)
class CustomerTrack:
    pcm: bytes  # at the session's rate
    rehearsal: CallReport  # the simulated call the timeline was taken from
    answers_at_ms: tuple[int, ...]  # where each answer starts on the track

    def write(self, path: Path, rate_hz: int) -> Path:
        write_wav(path, self.pcm, rate_hz)
        return path


def speak(text: str, fmt: AudioFormat, voice: str = "en-us", snr_db: float | None = 25.0, seed: int = 0) -> list[bytes]:
    """One answer over a simulated phone line (8 kHz μ-law with noise): an espeak-ng voice ("en-us"),
    or a Piper voice written "piper:<name>" (e.g. "piper:en_US-joe-medium")."""
    if voice.startswith("piper:"):
        pcm, rate = _piper(voice.split(":", 1)[1]).synthesize(text, 16000), 16000
    else:
        pcm, rate = EspeakTts(voice).synthesize(text, 16000), 16000
    if snr_db is not None:
        pcm, rate = telephone(pcm, rate, snr_db, seed), 8000
    return list(split_frames(resample(pcm, rate, fmt.rate_hz), fmt))


@functools.lru_cache(maxsize=4)
def _piper(name: str):  # noqa: ANN202 - loaded once per voice
    from voicebot.speech.piper_tts import PiperTts

    return PiperTts(name)


def script_customer(
    session: CallSession,
    answers: list[list[bytes]],
    reaction_ms: int = 1000,
    after: list[bytes] | None = None,
    after_gap_ms: int = 1500,
    tail_ms: int = 8000,
    max_ms: int = 300_000,
) -> CustomerTrack:
    """Rehearse the call on the virtual clock; return the customer's side as one track.

    ``session`` is consumed (a fresh one, built exactly as the real call will be).
    """
    fmt = session.fmt
    turns = [CustomerAudio(frames, reaction_ms, name=f"answer {i + 1}") for i, frames in enumerate(answers)]
    sim = CallSimulator(fmt, turns)
    duration = sim.run(session, max_ms)
    starts = _answer_starts(sim.inbound, answers)
    track = list(sim.inbound)
    if after:
        track += [fmt.silence()] * (after_gap_ms // fmt.frame_ms) + list(after)
    track += [fmt.silence()] * (tail_ms // fmt.frame_ms)
    return CustomerTrack(b"".join(track), session.report(duration), tuple(i * fmt.frame_ms for i in starts))


def _answer_starts(inbound: list[bytes], answers: list[list[bytes]]) -> list[int]:
    # the simulator copies each answer's frames in order: find each one's first frame
    starts, pos = [], 0
    for frames in answers:
        if not frames:
            continue
        first = frames[0]
        while pos < len(inbound) and inbound[pos] is not first:
            pos += 1
        if pos < len(inbound):
            starts.append(pos)
            pos += len(frames)
    return starts
