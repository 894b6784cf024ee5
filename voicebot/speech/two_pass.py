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

The grammar pass also gives streaming hints (words for a barge-in to weigh); the
end of a turn on a complete answer is judged on Whisper's text at a pause, since
a grammar's partial is forced too (a comma in "Actually, put me on your do-not-call
list" ended the turn on a partial "absolutely"). A node that takes free text has
no grammar: Whisper alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicebot.speech.asr import AsrEngine, AsrResult, AsrStream


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

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        self._with_grammar = bool(phrases)
        self.open.set_vocabulary(phrases)
        if phrases:
            self.grammar.set_vocabulary(phrases)

    def push(self, pcm: bytes) -> list[AsrResult]:
        self.open.push(pcm)
        if not self._with_grammar:
            return []
        # the grammar's partials are hints, never the text: words for a barge-in to weigh, but no
        # "complete answer" to end the turn on (a forced "absolutely" at the comma of "Actually, ...")
        return [AsrResult("", 0.0, False, ((r.text, r.confidence),)) for r in self.grammar.push(pcm) if r.text]

    def peek(self) -> AsrResult:
        heard = self.open.peek()
        hint = self.grammar.peek() if self._with_grammar else None
        return AsrResult(heard.text, heard.confidence, False, ((hint.text, hint.confidence),) if hint and hint.text else ())

    def flush(self) -> AsrResult:
        heard = self.open.flush()
        if not self._with_grammar:
            return heard
        hint = self.grammar.flush()
        alternatives = ((hint.text, hint.confidence),) if hint.text else ()
        return AsrResult(heard.text, heard.confidence, True, alternatives)

    def reset(self) -> None:
        self.open.reset()
        self.grammar.reset()
