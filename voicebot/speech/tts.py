"""Choosing a TTS engine for a dialplan, and the espeak-ng engine.

Piper is the engine for real campaigns. espeak-ng (Debian's package) speaks
almost every language with no model at all: it is what a language without a
Piper voice falls back to, and what tests use for such languages (Korean).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

from voicebot.audio.frames import read_wav
from voicebot.audio.resample import resample
from voicebot.config import TtsSettings
from voicebot.errors import TtsError

_ESPEAK_TIMEOUT_S = 30


class EspeakTts:
    """espeak-ng through its command line (one short process per prompt; prompts are cached)."""

    def __init__(self, voice: str, speed_wpm: int = 160) -> None:
        self.binary = shutil.which("espeak-ng")
        if self.binary is None:
            raise TtsError(
                "espeak-ng is not installed (Debian: apt-get install espeak-ng; `make setup` does it)", code="tts-engine-missing"
            )
        self.voice = voice
        self.speed_wpm = speed_wpm

    @property
    def voice_id(self) -> str:
        return f"espeak:{self.voice}:wpm={self.speed_wpm}"

    def synthesize(self, text: str, rate_hz: int) -> bytes:
        if not text.strip():
            return b""
        try:
            proc = subprocess.run(
                [self.binary, "-v", self.voice, "-s", str(self.speed_wpm), "--stdout", text],
                capture_output=True,
                timeout=_ESPEAK_TIMEOUT_S,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            raise TtsError(
                f"espeak-ng failed for voice '{self.voice}': {exc.stderr.decode(errors='replace').strip()}", code="tts-synthesis-failed"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise TtsError(f"espeak-ng took over {_ESPEAK_TIMEOUT_S} s", code="tts-synthesis-failed") from exc
        pcm, rate = read_wav(io.BytesIO(proc.stdout))
        return resample(pcm, rate, rate_hz)


def make_tts(settings: TtsSettings, language: str, models_dir: Path | None = None):
    """The engine a dialplan asks for (loaded once per call of this function)."""
    if settings.engine == "espeak":
        return EspeakTts(settings.voice if settings.voice != TtsSettings().voice else language)
    from voicebot.speech.piper_tts import PiperTts

    return PiperTts.from_settings(settings, models_dir)
