"""Audio the benchmarks' customers play: espeak-ng speech with pauses, over a simulated phone line.

sipp streams it as RTP from a raw G.711 μ-law file (its ``rtp_stream`` action),
so the bot's VAD, endpointing and recognition hear real speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.audio.frames import NARROWBAND, write_wav

# Answers the bench dialplan's nodes expect, so turns end early (a complete match) or after 600 ms.
PHRASES = ("yes sure", "tell me more", "not really", "yes")
_BIAS = 0x84
_CLIP = 32635


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 → G.711 μ-law bytes (ITU-T G.711, the table-free form)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -mag, mag).astype("<i2").tobytes()


@dataclass(frozen=True)
class SpeechTrack:
    pcm: bytes  # 8 kHz PCM16
    onsets_ms: tuple[int, ...]  # where each phrase starts

    @property
    def duration_ms(self) -> int:
        return NARROWBAND.ms(len(self.pcm))


def speech_track(
    phrases: tuple[str, ...] = PHRASES, pause_ms: int = 2200, lead_ms: int = 1500, voice: str = "en-us", snr_db: float | None = 25.0
) -> SpeechTrack:
    """The phrases one after another, each followed by ``pause_ms`` of line noise-free silence."""
    from voicebot.peers.customer import speak

    fmt = NARROWBAND
    parts, onsets, at = [fmt.silence(lead_ms)], [], lead_ms
    for i, text in enumerate(phrases):
        pcm = b"".join(speak(text, fmt, voice=voice, snr_db=snr_db, seed=i))
        onsets.append(at + _first_sound_ms(pcm))
        parts += [pcm, fmt.silence(pause_ms)]
        at += fmt.ms(len(pcm)) + pause_ms
    return SpeechTrack(b"".join(parts), tuple(onsets))


def _first_sound_ms(pcm: bytes, level: int = 1000) -> int:
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > level)
    return int(loud[0]) * 1000 // NARROWBAND.rate_hz if len(loud) else 0


def write_track(track: SpeechTrack, folder: Path, name: str = "customer") -> tuple[Path, Path]:
    """The track as ``name.wav`` (PCM, for reading back) and ``name.ulaw`` (raw μ-law for sipp)."""
    folder.mkdir(parents=True, exist_ok=True)
    wav, raw = folder / f"{name}.wav", folder / f"{name}.ulaw"
    write_wav(wav, track.pcm, NARROWBAND.rate_hz)
    raw.write_bytes(ulaw_encode(track.pcm))
    return wav, raw
