"""What a telephone line does to speech: 8 kHz, G.711 μ-law, background noise.

Used by `voicebot simulate --phone-line SNR` and by tests, to hear recorded or
synthesised answers the way the recogniser hears a real caller.
"""

from __future__ import annotations

import numpy as np

from voicebot.audio.frames import to_array
from voicebot.audio.resample import resample


def ulaw_roundtrip(pcm: bytes) -> bytes:
    """PCM16 through a G.711 μ-law encoder and decoder (what a telephone line does to it)."""
    x = to_array(pcm).astype(np.float64) / 32768.0
    mu = 255.0
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round(encoded * 127) / 127  # 8 bits: sign + 7 bits of magnitude
    decoded = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    return np.clip(decoded * 32768, -32768, 32767).astype("<i2").tobytes()


def add_noise(pcm: bytes, snr_db: float, seed: int = 0) -> bytes:
    """White noise at ``snr_db`` below the speech's RMS level (deterministic for a seed)."""
    x = to_array(pcm).astype(np.float64)
    voiced = x[np.abs(x) > 0.02 * 32768] if np.any(np.abs(x) > 0.02 * 32768) else x
    signal_rms = float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.0
    noise = np.random.default_rng(seed).normal(0, signal_rms * 10 ** (-snr_db / 20), x.size)
    return np.clip(x + noise, -32768, 32767).astype("<i2").tobytes()


def telephone(pcm: bytes, rate_hz: int, snr_db: float = 20.0, seed: int = 0) -> bytes:
    """Speech as it arrives over a G.711 trunk: 8 kHz, μ-law, background noise."""
    return ulaw_roundtrip(add_noise(resample(pcm, rate_hz, 8000), snr_db, seed))
