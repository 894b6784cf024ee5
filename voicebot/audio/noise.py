"""Background noise for test speech: pink noise and babble, mixed at a chosen SNR, deterministic by seed.

Pure numpy, no synthesis here: babble is built from talkers' PCM that the
caller synthesises once (``voicebot bench understanding`` caches them). The
speech level is its active-level RMS, measured as ``line.add_noise`` measures
it (the RMS of the samples above 2 % of full scale), so an SNR here means the
same as ``voicebot simulate --phone-line SNR``. The noise's level is its RMS
over the whole segment added.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voicebot.audio.frames import to_array
from voicebot.audio.line import ulaw_roundtrip

NOISES = ("pink", "babble", "white")
_ACTIVE = 0.02 * 32768  # a sample above this is speech (as line.add_noise counts it)


def active_rms(x: np.ndarray) -> float:
    """RMS of the speech's active samples (all samples when none is above the threshold)."""
    x = np.asarray(x, dtype=np.float64)
    loud = x[np.abs(x) > _ACTIVE]
    voiced = loud if loud.size else x
    return float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return x / rms if rms > 0 else x


def white_noise(n: int, seed: int = 0) -> np.ndarray:
    """Gaussian white noise, RMS 1."""
    return _unit(np.random.default_rng(seed).normal(0.0, 1.0, n))


def pink_noise(n: int, seed: int = 0) -> np.ndarray:
    """1/f noise (power falls 3 dB per octave), RMS 1: white noise shaped by 1/sqrt(f) in one FFT."""
    if n <= 0:
        return np.zeros(0)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0.0, 1.0, n))
    k = np.arange(spectrum.size, dtype=np.float64)
    k[0] = 1.0
    spectrum /= np.sqrt(k)
    spectrum[0] = 0.0  # no DC
    return _unit(np.fft.irfft(spectrum, n))


def babble(talkers: Sequence[np.ndarray], n: int, seed: int = 0) -> np.ndarray:
    """Several people talking at once, RMS 1: each talker's recording (PCM16 samples, one
    speaker each, ideally 4 to 6 of them) at the same active level, looped from a
    seed-chosen start to ``n`` samples, summed."""
    if not talkers:
        raise ValueError("babble needs at least one talker's recording")
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    for talker in talkers:
        x = np.asarray(talker, dtype=np.float64)
        if x.size == 0:
            continue
        level = active_rms(x)
        start = int(rng.integers(0, x.size))
        looped = np.resize(np.roll(x, -start), n)  # np.resize repeats the recording to length
        out += looped / level if level > 0 else looped
    return _unit(out)


def make_noise(kind: str, n: int, seed: int = 0, talkers: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``n`` samples of RMS 1 of one of NOISES (babble needs ``talkers``)."""
    if kind == "pink":
        return pink_noise(n, seed)
    if kind == "babble":
        return babble(talkers, n, seed)
    if kind == "white":
        return white_noise(n, seed)
    raise ValueError(f"unknown noise '{kind}': one of {', '.join(NOISES)}")


def mix_at_snr(pcm: bytes, noise: np.ndarray, snr_db: float) -> bytes:
    """PCM16 speech plus ``noise`` (at least as long) scaled to ``snr_db`` below the speech's active level."""
    x = to_array(pcm).astype(np.float64)
    segment = np.asarray(noise[: x.size], dtype=np.float64)
    if segment.size < x.size:
        raise ValueError(f"{segment.size} samples of noise for {x.size} of speech")
    noise_rms = float(np.sqrt(np.mean(segment**2))) if segment.size else 0.0
    scale = active_rms(x) * 10 ** (-snr_db / 20) / noise_rms if noise_rms > 0 else 0.0
    return np.clip(np.round(x + segment * scale), -32768, 32767).astype("<i2").tobytes()


def noisy_line(pcm_8k: bytes, kind: str, snr_db: float, seed: int = 0, talkers: Sequence[np.ndarray] = ()) -> bytes:
    """8 kHz PCM16 speech with ``kind`` noise at ``snr_db``, through G.711 μ-law: what the recogniser hears."""
    noise = make_noise(kind, len(pcm_8k) // 2, seed, talkers)
    return ulaw_roundtrip(mix_at_snr(pcm_8k, noise, snr_db))
