"""Whisper for the answer; a grammar pass for barge-in words, and a second opinion when the script asks.

Why both: Whisper tiny.en hears answers outside a node's phrases as themselves
(so they become reprompts, not actions), but it makes nothing of a lone word
cut off by a pause: Piper's "stop," before "I am busy" came out empty or as
"S-", "up, up", so the paused prompt resumed over a person who had asked it to
stop. A recogniser restricted to the node's phrases streams such a word within
a few frames. It is also confidently wrong on everything else ("Tuesday at ten
works for me" -> "do not call me"), so it is only a second opinion: the script
takes its text where Whisper's matches nothing and the two sound alike.

When it runs: while the session wants hints (``want_hints``: a barge-in has
paused the prompt and waits for words) it streams, from the onset the session
pushes again after a reset. Otherwise it decodes the whole answer only when the
script asks for its opinion (``AsrResult.second_opinion``: Whisper's text matches
nothing, is too unsure, or would be confirmed). Run on every frame of every
answer it was half the recognition CPU (`voicebot bench understanding`: 0.134 s
per s of answer; on demand about 0.10, Whisper's beam of 3 included).

A node that takes free text has no grammar: Whisper alone, hints or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voicebot.speech.asr import Alternatives, AsrEngine, AsrResult, AsrStream

# What a second opinion decodes at most: the end of a long turn (a rambling answer is Whisper's to tell)
_SECOND_OPINION_MAX_S = 10


class TwoPassEngine:
    def __init__(self, open_engine: AsrEngine, grammar_engine: AsrEngine) -> None:
        self.open_engine = open_engine
        self.grammar_engine = grammar_engine
        self.language = open_engine.language
        self.name = f"{open_engine.name}+{grammar_engine.name}"

    def stream(self, rate_hz: int = 8000) -> TwoPassStream:
        return TwoPassStream(self.open_engine.stream(rate_hz), self.grammar_engine.stream(rate_hz))

    def warm(self) -> None:
        for engine in (self.open_engine, self.grammar_engine):
            warm = getattr(engine, "warm", None)
            if warm is not None:
                warm()


class TwoPassStream:
    def __init__(self, open_stream: AsrStream, grammar_stream: AsrStream) -> None:
        self.open = open_stream
        self.grammar = grammar_stream
        self.rate_hz = open_stream.rate_hz
        self._with_grammar = False
        self._hints = False  # the session wants streaming words now
        self._fresh = True  # nothing pushed since the last reset or flush
        self._audio = bytearray()  # this utterance, for a grammar decode on demand
        self._vocabulary_version = 0
        # the grammar has heard this utterance from its start: only then is its text an alternative
        self._grammar_whole = False

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        self._with_grammar = bool(phrases)
        self._vocabulary_version += 1
        self.open.set_vocabulary(phrases)
        if phrases:
            self.grammar.set_vocabulary(phrases)

    def want_hints(self, on: bool) -> None:
        if on == self._hints:
            return
        self._hints = on
        if on:
            self._grammar_whole = self._fresh
        else:
            self.grammar.reset()  # what it heard of this turn is of no use once the barge-in is decided
            self._grammar_whole = False

    def _grammar_on(self) -> bool:
        return self._hints and self._with_grammar

    def push(self, pcm: bytes) -> list[AsrResult]:
        self._fresh = False
        self.open.push(pcm)
        if self._with_grammar:
            self._audio += pcm
            del self._audio[: max(0, len(self._audio) - _SECOND_OPINION_MAX_S * self.rate_hz * 2)]
        if not self._grammar_on():
            return []
        # the grammar's partials are hints, never the text: words for a barge-in to weigh, but no
        # "complete answer" to end the turn on (a forced "absolutely" at the comma of "Actually, ...")
        return [AsrResult("", 0.0, False, ((r.text, r.confidence),)) for r in self.grammar.push(pcm) if r.text]

    def peek(self) -> AsrResult:
        heard = self.open.peek()
        hint = self.grammar.peek() if self._grammar_on() else None
        return AsrResult(heard.text, heard.confidence, False, ((hint.text, hint.confidence),) if hint and hint.text else ())

    def flush(self) -> AsrResult:
        heard = self.open.flush()
        whole = self._grammar_on() and self._grammar_whole
        hint = self.grammar.flush() if whole else None
        if not whole:
            self.grammar.reset()
        on_demand = self._second_opinion(bytes(self._audio)) if self._with_grammar and not whole and self._audio else None
        self._restart()
        alternatives = ((hint.text, hint.confidence),) if hint and hint.text else ()
        return AsrResult(heard.text, heard.confidence, True, alternatives, on_demand)

    def _second_opinion(self, audio: bytes) -> Callable[[], Alternatives]:
        version = self._vocabulary_version

        def decode() -> Alternatives:
            # the grammar is busy with a barge-in's words, or now holds another node's phrases: no opinion
            if self._grammar_on() or version != self._vocabulary_version:
                return ()
            self.grammar.reset()
            self.grammar.push(audio)
            hint = self.grammar.flush()
            return ((hint.text, hint.confidence),) if hint.text else ()

        return decode

    def reset(self) -> None:
        self.open.reset()
        self.grammar.reset()
        self._restart()

    def _restart(self) -> None:
        self._audio = bytearray()
        self._fresh = True
        self._grammar_whole = self._hints
