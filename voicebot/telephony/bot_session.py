"""The real call session inside a media worker: a dialplan's script with its speech engines.

``BotSessions`` is the worker's session factory. It is pickled into the worker
process (spawn) and loads the dialplan, the TTS voice and the ASR model there,
once, in ``prepare()`` before the worker reports Ready, so no call waits for a
model. Prompts come from the on-disk prompt cache that the campaign rendered
before dialling; a miss (a prompt only known mid-call) is synthesised then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voicebot.audio.frames import AudioFormat
from voicebot.dialplan import LoadedDialplan, load_dialplan
from voicebot.session import CallSession
from voicebot.speech.asr import AsrEngine
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.select import make_asr_engine
from voicebot.speech.tts import make_tts


@dataclass
class _Loaded:
    dialplan: LoadedDialplan
    prompts: PromptCache
    asr: AsrEngine


@dataclass
class BotSessions:
    dialplan_path: Path
    prompt_dir: Path
    models_dir: Path | None = None
    _loaded: _Loaded | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # engines stay in the process that loaded them
        return {"dialplan_path": self.dialplan_path, "prompt_dir": self.prompt_dir, "models_dir": self.models_dir, "_loaded": None}

    def prepare(self) -> None:
        if self._loaded is None:
            loaded = load_dialplan(self.dialplan_path)
            speech = loaded.dialplan.speech
            prompts = PromptCache(self.prompt_dir, make_tts(speech.tts, speech.language, self.models_dir))
            self._loaded = _Loaded(loaded, prompts, make_asr_engine(speech.asr, speech.language, self.models_dir))

    def __call__(self, attempt_id: str, fmt: AudioFormat, contact: dict[str, str]) -> CallSession:
        self.prepare()
        assert self._loaded is not None
        graph = self._loaded.dialplan.graph
        return CallSession(graph, self._loaded.asr.stream(fmt.rate_hz), self._loaded.prompts, contact)
