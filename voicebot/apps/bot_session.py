"""The real call session inside a media worker: a dialplan's script with its speech engines.

``BotSessions`` is the worker's session factory. It is pickled into the worker
process (spawn) and loads the dialplan, the TTS voice and the ASR model there,
once, in ``prepare()`` before the worker reports Ready, so no call waits for a
model. Prompts come from the on-disk prompt cache that the campaign renders:
static ones before dialling, a contact's own just in time. A contact's prompt
not rendered yet at the answer is said in its generic form ("Hi there" for
"Hi {first_name|there}"), never waited for; any other miss (a prompt only
known mid-call) is synthesised then.

Every call's record (outcome, path, transcript, turns with timings, prompts
heard) travels on its ``Ended`` (the worker asks ``take_record``). With
``calls_dir`` every call also leaves ``<attempt_id>.json``, a copy of it, and,
when the dialplan says ``record_calls: true``, ``<attempt_id>.wav`` (the
customer left, the bot right).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.apps import recipe
from voicebot.audio.frames import AudioFormat, write_stereo
from voicebot.campaign.jit_prompts import FallbackPrompts
from voicebot.campaign.prompts import PersonalPrompts
from voicebot.dialplan import LoadedDialplan, load_dialplan
from voicebot.session import CallSession
from voicebot.speech.asr import AsrEngine
from voicebot.speech.prompt_cache import PromptCache

# Calls of one worker that may be in a free-text answer at once: K of the PyPI pjsua2 build.
FREE_TEXT_DECODERS = 4


@dataclass
class _Loaded:
    dialplan: LoadedDialplan
    prompts: PromptCache
    asr: AsrEngine
    personal: PersonalPrompts


@dataclass
class BotSessions:
    dialplan_path: Path
    prompt_dir: Path
    models_dir: Path | None = None
    calls_dir: Path | None = None
    _loaded: _Loaded | None = field(default=None, init=False, repr=False, compare=False)
    _records: dict[str, dict] = field(default_factory=dict, init=False, repr=False, compare=False)  # attempt id -> record
    _sources: dict[str, FallbackPrompts] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # engines stay in the process that loaded them
        return {**self.__dict__, "_loaded": None, "_records": {}, "_sources": {}}

    def prepare(self) -> None:
        if self._loaded is None:
            loaded = load_dialplan(self.dialplan_path)
            prompts = recipe.prompt_cache(loaded, self.prompt_dir, self.models_dir)
            asr = recipe.asr_engine(loaded, self.models_dir)
            keep = getattr(asr, "keep_free_text_decoders", None)
            if keep is not None and any(n.listens and not n.vocabulary() for n in loaded.graph.nodes.values()):
                keep(FREE_TEXT_DECODERS)  # before the model host forks: no call loads the n-gram model mid-answer
            self._loaded = _Loaded(loaded, prompts, asr, PersonalPrompts.of(loaded.graph))

    def warm(self) -> None:
        """In the worker process, before its first call: what the speech engines cannot share across a fork."""
        self.prepare()
        assert self._loaded is not None
        warm = getattr(self._loaded.asr, "warm", None)
        if warm is not None:
            warm()

    @property
    def operator_legs(self) -> int:
        """A bridged handoff dials the operator from the customer's worker: keep one call of each worker for it."""
        self.prepare()
        assert self._loaded is not None
        return int(any(op.mode == "bridge" for op in self._loaded.dialplan.dialplan.operators.values()))

    def __call__(self, attempt_id: str, fmt: AudioFormat, contact: dict[str, str]) -> CallSession:
        self.prepare()
        assert self._loaded is not None
        dialplan = self._loaded.dialplan
        on_end = functools.partial(self.record_call, attempt_id, fmt)
        record = dialplan.dialplan.campaign.record_calls and self.calls_dir is not None
        prompts = self._sources[attempt_id] = FallbackPrompts(self._loaded.prompts, self._loaded.personal.generic(contact))
        return recipe.call_session(dialplan, self._loaded.asr, prompts, contact, fmt.rate_hz, record=record, on_end=on_end)

    def take_record(self, attempt_id: str) -> dict | None:
        """The call's record, for its Ended message (the worker asks once the session has closed)."""
        self._sources.pop(attempt_id, None)
        return self._records.pop(attempt_id, None)

    def record_call(self, attempt_id: str, fmt: AudioFormat, session: CallSession) -> None:
        """Each session's on_end: keep its record for ``take_record`` and, with ``calls_dir``, write the files.
        Runs on the worker's session thread, never on the media clock."""
        customer, bot = session.recording()
        duration_ms = fmt.ms(max(len(customer), len(bot)))
        record = json.loads(session.report(duration_ms).to_json())  # plain JSON values only
        source = self._sources.pop(attempt_id, None)
        if source is not None and source.fell_back:
            record["generic_prompts"] = source.fell_back  # said in the generic form: not rendered in time
            record["transcript"] = source.as_played(record.get("transcript", []))
        self._records[attempt_id] = record
        text = json.dumps(record, ensure_ascii=False, indent=2)
        if self.calls_dir is None:
            return  # the files are an optional copy; the record travels on the Ended
        self.calls_dir.mkdir(parents=True, exist_ok=True)
        if customer or bot:
            write_stereo(self.calls_dir / f"{attempt_id}.wav", customer, bot, fmt.rate_hz)
        (self.calls_dir / f"{attempt_id}.json").write_text(text, encoding="utf-8")
