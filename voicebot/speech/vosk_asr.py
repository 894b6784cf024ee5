"""Vosk (Kaldi) recognition: one model per process, one recogniser per call.

The model is large (the bundled Korean one adds ~520 MB resident) and read-only,
so a ``VoskEngine`` loads it once and every ``VoskStream`` shares it. Measured
with that model on this 2-core box, 8 kHz input:

- grammar mode (a node's phrases): real-time factor ~0.025, ~1 MB per recogniser;
- unrestricted: 0.1-0.25 once warm, but 0.5-0.8 for the first utterance after
  the full graph is (re)built, and each recogniser then holds ~35 MB of graph cache;
- Vosk releases the GIL while decoding (two threads scale), unlike PocketSphinx.

A Vosk grammar is not a phrase list: Vosk estimates a bigram model from the
phrases, so words of different phrases can follow each other ("아니요 좋아요
있어요"). Without an "[unk]" word in the model (the Korean one has none), speech
outside the grammar is still forced onto grammar words, often with confidence
1.0. The intent matcher downstream tolerates both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import fmean

import vosk

from voicebot.audio.resample import StreamResampler
from voicebot.errors import AsrError
from voicebot.speech.asr import AsrResult

log = logging.getLogger(__name__)

# Words a model emits for speech it could not place; never part of the text.
_GARBAGE = frozenset({"[unk]", "<unk>"})
_UNRESTRICTED = "[]"  # what KaldiRecognizer.SetGrammar takes to go back to the full graph


@dataclass(frozen=True)
class VoskModelInfo:
    """What the model directory says about input rate and runtime grammars (without loading it)."""

    rate_hz: int
    allow_upsample: bool
    runtime_grammar: bool  # False for a static HCLG.fst graph: Vosk ignores grammars then

    @classmethod
    def read(cls, model_dir: Path) -> VoskModelInfo:
        # Vosk's two layouts: am/ conf/ graph/ subfolders, or everything in one folder.
        nested = (model_dir / "am" / "final.mdl").is_file()
        options = _kaldi_options(model_dir / ("conf/mfcc.conf" if nested else "mfcc.conf"))
        graph = model_dir / "graph" if nested else model_dir
        return cls(
            rate_hz=int(float(options.get("--sample-frequency", "16000"))),  # Kaldi's default
            allow_upsample=options.get("--allow-upsample", "false") in ("", "true"),
            runtime_grammar=(graph / "HCLr.fst").is_file() and not (graph / "HCLG.fst").is_file(),
        )


def _kaldi_options(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    options = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, value = line.split("#", 1)[0].strip().partition("=")
        if name.startswith("--"):
            options[name] = value.strip().lower()
    return options


class VoskEngine:
    """A loaded Vosk model and the grammars built for it; thread-safe, shared by all calls of a process."""

    name = "vosk"

    def __init__(self, model_dir: str | Path, language: str) -> None:
        self.model_dir = Path(model_dir)
        self.language = language
        if not self.model_dir.is_dir():
            raise AsrError(f"Vosk model directory {self.model_dir} does not exist", code="asr-model-missing")
        self.info = VoskModelInfo.read(self.model_dir)
        vosk.SetLogLevel(-1)  # keeps Kaldi's warnings, drops its chatty LOG lines
        try:
            self.model = vosk.Model(str(self.model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise AsrError(f"{self.model_dir} is not a Vosk model that loads: {exc}", code="asr-model-invalid") from exc
        self._unk = "[unk]" if self.knows("[unk]") else None
        # Nodes are revisited call after call: build (and warn about) each vocabulary once.
        self.grammar = lru_cache(maxsize=256)(self._grammar)

    def knows(self, word: str) -> bool:
        return self.model.vosk_model_find_word(word) >= 0

    def stream(self, rate_hz: int = 8000) -> VoskStream:
        return VoskStream(self, rate_hz)

    def _grammar(self, phrases: tuple[str, ...]) -> str | None:
        """The Vosk grammar (JSON) for these phrases, or None when recognition stays unrestricted."""
        if not self.info.runtime_grammar:
            log.warning(
                "Vosk model %s has a static graph (HCLG.fst) and cannot be restricted to a node's phrases: recognising without a grammar",
                self.model_dir,
            )
            return None
        kept: dict[str, None] = {}
        unknown: set[str] = set()
        for phrase in phrases:
            words = phrase.lower().split()
            known = [w for w in words if self.knows(w)]
            unknown.update(w for w in words if w not in known)
            if known:
                kept.setdefault(" ".join(known), None)
        if unknown:
            # Vosk skips them too, but warns on stderr for every recogniser: say it once, through logging.
            log.warning("Vosk model %s does not know %s: left out of the grammar", self.model_dir, ", ".join(sorted(unknown)))
        if not kept:
            log.warning("no word of the vocabulary is known to Vosk model %s: recognising without a grammar", self.model_dir)
            return None
        return json.dumps([*kept, *([self._unk] if self._unk else [])], ensure_ascii=False)


class VoskStream:
    """One call's recogniser: push 20 ms frames, flush at the end of a turn. One thread per stream.

    Partial results carry everything heard since the last flush/reset, including
    segments that Vosk's own endpointer already closed (those are not reported
    separately: the turn is the caller's to end). A partial's confidence is 1.0
    (Vosk gives none); a final's is the mean word confidence, where a word that
    fell outside the grammar ("[unk]") counts 0.
    """

    def __init__(self, engine: VoskEngine, rate_hz: int) -> None:
        self.engine = engine
        self.rate_hz = rate_hz
        info = engine.info
        # Kaldi resamples by itself (down always, up when the model allows it). Passing 8 kHz
        # straight in recognised the Korean test answers far better than soxr upsampling to
        # 16 kHz first (15 vs 5 of 24 exact, 16 vs 10 intents), and costs nothing in Python.
        self._feed_hz = rate_hz if rate_hz >= info.rate_hz or info.allow_upsample else info.rate_hz
        self._wanted: str | None = None  # grammar for the next utterance; None: unrestricted
        self._recognizer: vosk.KaldiRecognizer | None = None
        self._applied: str | None = None
        self._resampler: StreamResampler | None = None  # set while an utterance is open
        self._closed_words: list[tuple[str, float]] = []
        self._partial = ""

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        """Takes effect with the next utterance: Vosk cannot change the grammar of a running one."""
        self._wanted = None if phrases is None else self.engine.grammar(tuple(phrases))

    def push(self, pcm: bytes) -> list[AsrResult]:
        if self._resampler is None:
            self._begin()
        recognizer = self._recognizer
        data = self._resampler.push(pcm)
        if not data:
            return []
        if recognizer.AcceptWaveform(data):
            self._closed_words += _words(recognizer.Result())
            current: list[str] = []
        else:
            current = json.loads(recognizer.PartialResult()).get("partial", "").split()
        text = _text([w for w, _ in self._closed_words] + current)
        if not text or text == self._partial:
            return []
        self._partial = text
        return [AsrResult(text, 1.0, False)]

    def peek(self) -> AsrResult:
        return AsrResult(self._partial, 1.0 if self._partial else 0.0, False)

    def flush(self) -> AsrResult:
        if self._resampler is None:
            return AsrResult("", 0.0, True)
        recognizer = self._recognizer
        tail = self._resampler.push(b"", last=True)
        if tail:
            recognizer.AcceptWaveform(tail)  # an endpoint here is covered by FinalResult below
        words = self._closed_words + _words(recognizer.FinalResult())
        self._end()
        text = _text([w for w, _ in words])
        confidence = fmean(0.0 if w.lower() in _GARBAGE else c for w, c in words) if text else 0.0
        return AsrResult(text, confidence, True)

    def reset(self) -> None:
        if self._resampler is not None:
            self._recognizer.Reset()
        self._end()

    def want_hints(self, on: bool) -> None:
        """Nothing to switch: see ``AsrStream.want_hints``."""

    def _begin(self) -> None:
        if self._recognizer is None:
            args = (self._wanted,) if self._wanted else ()
            self._recognizer = vosk.KaldiRecognizer(self.engine.model, self._feed_hz, *args)
            self._recognizer.SetWords(True)  # per-word confidences, for the final's confidence
        elif self._wanted != self._applied:
            # Cheap into a grammar (<25 ms); back to unrestricted rebuilds the full graph (~60 ms).
            self._recognizer.SetGrammar(self._wanted or _UNRESTRICTED)
        self._applied = self._wanted
        self._resampler = StreamResampler(self.rate_hz, self._feed_hz)

    def _end(self) -> None:
        self._resampler = None
        self._closed_words = []
        self._partial = ""


def _words(result_json: str) -> list[tuple[str, float]]:
    return [(w["word"], float(w["conf"])) for w in json.loads(result_json).get("result", [])]


def _text(words: list[str]) -> str:
    return " ".join(w for w in words if w.lower() not in _GARBAGE)
