"""Barge-in with backchannels: pause at once, then decide whether it was an interruption.

On speech onset during a prompt that allows barge-in, the prompt pauses at once
(the delay is the segmenter's start time, ~100 ms). What the recogniser hears
next decides: real words end the prompt (``STOP``); a backchannel ("uh-huh",
"yeah", "ага", "угу") or no words at all (a cough, a door) resumes it where it
paused (``RESUME``). Near the end of a prompt even "yes" is an answer, not a
backchannel: the question has been asked.

Pure state machine: no audio, no clock, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum

DEFAULT_BACKCHANNELS: dict[str, tuple[str, ...]] = {
    "en": (
        "uh-huh",
        "uh huh",
        "mhm",
        "mm",
        "hmm",
        "hm",
        "um",
        "uh",
        "yeah",
        "yes",
        "yep",
        "yup",
        "ok",
        "okay",
        "right",
        "sure",
        "i see",
        "got it",
        "alright",
    ),
    "ru": ("ага", "угу", "ну", "да", "да-да", "так", "понятно", "хорошо", "мгм", "ясно", "м", "ммм", "ладно"),
    "ko": ("네", "예", "음", "응", "아"),
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NOT_WORDS = {"unk"}  # Vosk's garbage token "[unk]"


class Interruption(Enum):
    PAUSE = "pause"  # speech started over a prompt: hold it
    RESUME = "resume"  # it was a backchannel or noise: go on where it paused
    STOP = "stop"  # real words: the prompt ends and the person has the turn


def words_of(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower().replace("ё", "е")) if w not in _NOT_WORDS]


def backchannel_phrases(language: str, override: Iterable[str] | None = None) -> tuple[str, ...]:
    """The dialplan's backchannels, or the language's defaults (also offered to the recogniser as they are)."""
    return tuple(override) if override is not None else DEFAULT_BACKCHANNELS.get(language.split("-")[0], ())


def backchannel_words(phrases: Iterable[str]) -> frozenset[str]:
    return frozenset(w for p in phrases for w in words_of(p))


class BargeInDetector:
    """What counts as an interruption.

    A recogniser restricted to a grammar turns a cough into a word and a
    backchannel into the start of some phrase ("uh-huh" → "of" of "of course"),
    so words count only once the person has spoken for ``min_speech_ms``, and
    only a word that is neither a backchannel nor a function word interrupts.
    """

    def __init__(
        self,
        backchannels: frozenset[str],
        confirm_ms: int = 900,
        answer_tail_ms: int = 800,
        min_speech_ms: int = 250,
        function_words: frozenset[str] = frozenset(),
    ) -> None:
        self.backchannels = backchannels
        self.function_words = function_words
        self.confirm_ms = confirm_ms
        self.answer_tail_ms = answer_tail_ms
        self.min_speech_ms = min_speech_ms
        self.reset()

    def reset(self) -> None:
        self._pending_since: int | None = None
        self._heard: list[str] = []
        self._speech_ms = 0

    @property
    def speech_ms(self) -> int:
        """Voiced time since the onset of the pending interruption."""
        return self._speech_ms

    @property
    def pending(self) -> bool:
        return self._pending_since is not None

    def speech_started(self, onset_ms: int, prompt_playing: bool, allowed: bool) -> Interruption | None:
        if self.pending or not (prompt_playing and allowed):
            return None
        self._pending_since = onset_ms
        self._heard = []
        return Interruption.PAUSE

    def voiced(self, frame_ms: int) -> None:
        """One more voiced frame since the onset."""
        if self.pending:
            self._speech_ms += frame_ms

    def heard(self, text: str, remaining_ms: int) -> Interruption | None:
        """A partial (or final) recognition of what is being said over the prompt."""
        if not self.pending:
            return None
        self._heard = words_of(text)
        if self._real_words(remaining_ms):
            self.reset()
            return Interruption.STOP
        return None

    def speech_stopped(self, remaining_ms: int) -> Interruption | None:
        if not self.pending:
            return None
        decision = Interruption.STOP if self._real_words(remaining_ms) else Interruption.RESUME
        self.reset()
        return decision

    def tick(self, ts_ms: int) -> Interruption | None:
        """No words at all within the confirmation window: it was noise."""
        if self.pending and not self._heard and ts_ms - self._pending_since >= self.confirm_ms:
            self.reset()
            return Interruption.RESUME
        return None

    def _real_words(self, remaining_ms: int) -> bool:
        if not self._heard or self._speech_ms < self.min_speech_ms:
            return False
        if remaining_ms <= self.answer_tail_ms:
            return True  # the question is (nearly) all out: any word is an answer
        return any(w not in self.backchannels and w not in self.function_words for w in self._heard)
