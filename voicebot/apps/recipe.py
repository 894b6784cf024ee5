"""How a dialplan's calls are assembled, written once for every entry point.

The steps that turn a dialplan into a running conversation (its prompt cache with
the dialplan's voice, its recogniser, a ``CallSession`` per call, media workers
whose sessions are made that way) were repeated in the CLI's simulation, the demo,
the campaign run, the remote worker and the worker's session factory. Each of them
now asks here, so a change to how a session is built (a new engine setting, a new
session option) is made in one place.

Imports of speech engines, the session and pjsua2 happen inside the functions that
need them: a campaign manager that only renders prompts and dispatches to remote
workers loads none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.dialplan import LoadedDialplan
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.tts import make_tts

if TYPE_CHECKING:
    from voicebot.session import CallSession, PromptSource
    from voicebot.speech.asr import AsrEngine
    from voicebot.telephony.pool import WorkerPool


def prompt_cache(loaded: LoadedDialplan, directory: Path, models_dir: Path | None = None) -> PromptCache:
    """The on-disk prompt cache with the dialplan's voice: what the manager renders and the workers play."""
    speech = loaded.dialplan.speech
    return PromptCache(directory, make_tts(speech.tts, speech.language, models_dir))


def asr_engine(loaded: LoadedDialplan, models_dir: Path | None = None) -> AsrEngine:
    """The dialplan's recogniser, loaded (once per process or model host: its models are large)."""
    from voicebot.speech.select import make_asr_engine

    speech = loaded.dialplan.speech
    return make_asr_engine(speech.asr, speech.language, models_dir)


def call_session(
    loaded: LoadedDialplan,
    asr: AsrEngine,
    prompts: PromptSource,
    contact: Mapping[str, object],
    rate_hz: int,
    record: bool = False,
    on_end: Callable[[CallSession], None] | None = None,
) -> CallSession:
    """One call's session: the dialplan's script with a fresh recognition stream at the call's rate."""
    from voicebot.session import CallSession

    return CallSession(loaded.graph, asr.stream(rate_hz), prompts, contact, record=record, on_end=on_end)


def media_workers(
    dialplan: Path,
    loaded: LoadedDialplan,
    concurrency: int,
    prompt_dir: Path,
    models_dir: Path | None,
    calls_dir: Path | None,
    bind_address: str,
) -> WorkerPool:
    """Media workers on this host for the dialplan's campaign, each session made by ``BotSessions``."""
    from voicebot.apps.bot_session import BotSessions
    from voicebot.telephony.endpoint import EndpointSettings
    from voicebot.telephony.pool import WorkerPool
    from voicebot.telephony.worker import WorkerSettings

    campaign = loaded.dialplan.campaign
    settings = WorkerSettings(
        campaign.trunk,
        BotSessions(dialplan, prompt_dir, models_dir, calls_dir),
        endpoint=EndpointSettings(bind_address=bind_address, caller_id=campaign.caller_id),
        ring_timeout_s=campaign.ring_timeout_s,
        max_call_duration_s=campaign.max_call_duration_s,
    )
    return WorkerPool(settings, concurrency)
