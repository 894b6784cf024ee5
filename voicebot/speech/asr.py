"""Streaming speech recognition behind one small protocol (push / flush / reset).

Engines (Vosk, PocketSphinx, Whisper) implement ``AsrEngine``; one engine (and its model)
is shared by every call of a process, each call gets its own ``AsrStream``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Alternatives = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class AsrResult:
    text: str
    confidence: float  # 0..1; 1.0 when the engine gives none
    final: bool
    # (text, confidence) of a second recogniser restricted to the node's phrases, on the same audio
    # (two-pass recognition). Never the answer by itself: the script takes one only where it sounds
    # like ``text``, the open-vocabulary result (a grammar forces any answer onto some phrase).
    alternatives: Alternatives = ()
    # the same, asked for only when the script needs it (``text`` matched nothing): decoding on demand
    # spends the second recogniser's CPU on the answers that need it, not on every one
    second_opinion: Callable[[], Alternatives] | None = field(default=None, compare=False)


class AsrStream(Protocol):
    rate_hz: int

    def push(self, pcm: bytes) -> list[AsrResult]:
        """Feed PCM16 mono at ``rate_hz``; returns partial results when the text changes, each
        the whole utterance so far (everything since the last flush or reset)."""

    def peek(self) -> AsrResult:
        """What has been said so far, without ending the utterance: the latest partial of a streaming
        engine; an utterance-at-once engine (Whisper) decodes what it has. The session asks at a
        pause in speech and while a barge-in waits for words."""

    def flush(self) -> AsrResult:
        """End of the utterance: the final result for everything pushed since the last flush/reset."""

    def reset(self) -> None:
        """Forget everything pushed so far."""

    def want_hints(self, on: bool) -> None:
        """Whether the session wants streaming words now (a barge-in waits on them). Only a stream
        with a second, streaming pass beside an utterance-at-once one (``TwoPassStream``) runs that
        pass just then; every other stream ignores it."""

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        """Restrict recognition to these phrases (plus an unknown-word garbage model where the engine has one); None lifts it."""


class AsrEngine(Protocol):
    name: str
    language: str

    def stream(self, rate_hz: int) -> AsrStream: ...
