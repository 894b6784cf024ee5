"""Two-pass recognition: an open-vocabulary recogniser for what was said, a grammar one for hints.

Why both: Whisper tiny.en hears answers outside a node's phrases as themselves
(so they become reprompts, not actions), but on robotic or noisy voices it
garbles short answers ("take me off your list" -> "Take me off your lute").
A recogniser restricted to the node's phrases gets those right, and gets
everything else confidently wrong ("Tuesday at ten works for me" -> "do not
call me"). The stream returns Whisper's text with the grammar's as an
alternative; the script engine takes the alternative only where the two sound
alike (``voicebot.script.intents.IntentMatcher.sounds_alike``), so the open
pass is the grammar's rejection baseline.

The grammar pass runs only when its hint can matter: the turn's audio is kept
and decoded by the grammar at a peek or the end of the turn, and only when
Whisper's text is short or not sure (below ``SURE``). A sure, longer text is
taken as heard: a grammar hypothesis would only have raised its confidence
(already above every confirmation threshold) or replaced an answer that fits
no phrase, which should be a reprompt. Streaming the grammar over every frame
cost as much CPU as Whisper itself. The end of a turn and a barge-in's words
come from Whisper's text at a pause, since a grammar's partial is forced too (a
comma in "Actually, put me on your do-not-call list" ended the turn on a partial
"absolutely"). A node that takes free text has no grammar: Whisper alone.
"""

from __future__ import annotations

from typing import Sequence

from voicebot.speech.asr import AsrEngine, AsrResult, AsrStream

SURE = 0.9  # Whisper's confidence at or above which, with 3 words or more, no grammar hint is decoded


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
        self._unheard = bytearray()  # the turn's audio the grammar has not decoded yet
        self.grammar_decodes = 0  # for benchmarks and tests: how often a hint was decoded

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        self._with_grammar = bool(phrases)
        self.open.set_vocabulary(phrases)
        if phrases:
            self.grammar.set_vocabulary(phrases)

    def push(self, pcm: bytes) -> list[AsrResult]:
        self.open.push(pcm)
        if self._with_grammar:
            self._unheard += pcm
        return []

    def peek(self) -> AsrResult:
        heard = self.open.peek()
        hint = self._hint(final=False) if self._wants_hint(heard) else None
        return AsrResult(heard.text, heard.confidence, False, ((hint.text, hint.confidence),) if hint and hint.text else ())

    def flush(self) -> AsrResult:
        heard = self.open.flush()
        if not self._with_grammar:
            return heard
        if not self._wants_hint(heard):
            self._reset_grammar()
            return heard
        hint = self._hint(final=True)
        self._unheard = bytearray()
        return AsrResult(heard.text, heard.confidence, True, ((hint.text, hint.confidence),) if hint.text else ())

    def reset(self) -> None:
        self.open.reset()
        self._reset_grammar()

    def _wants_hint(self, heard: AsrResult) -> bool:
        return self._with_grammar and (heard.confidence < SURE or len(heard.text.split()) < 3)

    def _hint(self, final: bool) -> AsrResult:
        if self._unheard:
            self.grammar.push(bytes(self._unheard))
            self._unheard = bytearray()
        self.grammar_decodes += 1
        return self.grammar.flush() if final else self.grammar.peek()

    def _reset_grammar(self) -> None:
        self.grammar.reset()
        self._unheard = bytearray()
