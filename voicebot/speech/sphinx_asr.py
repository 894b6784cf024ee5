"""PocketSphinx recognition: a JSGF grammar of the node's phrases, or the n-gram model.

Works out of the box with the US-English model bundled in the ``pocketsphinx``
package (16 kHz features; 8 kHz call audio is upsampled). Measured on this
2-core box on the answers a caller gives at every listening node of
dialplans/demo_en.yaml (82 answers, many not literally in the phrase lists:
"sure go ahead", "sorry i'm not interested"), each spoken by Piper joe
(length_scale 0.85/1.0/1.15) and espeak-ng (en-us, en-us -s 140, en-gb, en-gb
-s 200), degraded to 8 kHz with white noise at 10/15/20 dB SNR and μ-law, each
the first answer of a new stream (1722 utterances; 1 s of audio on average).
Score: the intent the node's matcher picks from the recognised text (for
capture nodes, the slot value), and the text itself where the phrasing is in
the vocabulary. With grammars of 57-523 phrases:

    SNR      intent         exact text
    10 dB    11 % -> 56 %   (most failures are here)
    15 dB    34 % -> 79 %
    20 dB    58 % -> 84 %
    all      34.5 % -> 72.9 %   24.2 % -> 71.3 %   (Piper 70.6 %, espeak-ng 74.6 %)

The Piper-voiced greeting vocabulary (93 phrases, 15 dB) went from 42 to 89
of 93 intents right. What did it, in order of effect: ``bestpath=False`` (the
lattice best path of an FSG search drops the last word or two, "how much
does", "take me off", and sometimes everything), cepstral means re-measured
for this channel, beams wider than the defaults (+5 points; 1e-80 gains ~1
more at 1.4x the CPU). Tried and not better: features limited to the
telephone band (upperf 3500-3900, nfilt 20, lowerf 200, each with its own
re-measured means: 37-44 % against 70 %; the model was trained on 130-6800 Hz
features; note that upperf/nfilt passed to Decoder() are silently overridden
by the model's feat.params, they take effect only through reinit_feat),
``fsgusefiller=no`` (15 %), ``pip=0.1`` (46 %), ``lw`` 4 or 10, ``silprob``
0.1, ``fillprob`` 1e-4, ``topn`` 8 (all within ±2 points), the resampler's
tail at the end of the turn (no difference: the last words were lost in the
lattice, not in the audio). Real-time factor per stream: ~0.03 for 60-90
phrases, ~0.08 for 523; a grammar of 523 phrases compiles in ~2 ms and loads
into a decoder in ~20 ms, once per stream (the stream keeps its last 8
grammars compiled). The n-gram model costs about real time, and gets almost
every word wrong on such audio (``_LM_OPTIONS`` make it ~5x cheaper, no
worse). PocketSphinx holds the GIL while it decodes:
two threads take twice as long as one, so it belongs in a speech process, not
a media worker.

Why the grammar is a plain list of alternatives: filler words (silence, noise)
may sit between any two words, and with ``bestpath=False`` the search returns
whole phrases. Tried earlier and measured worse: optional garbage words around
the phrases (the garbage words win over real ones), phrase suffixes or
optional prefixes as alternatives, and loops (``<phrase>+``), which make
end_utt run for seconds or never return. A second optional phrase (``<p>
[<p>]``) catches two-phrase answers ("no thanks, not interested") but costs the
single ones, which are the usual.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import fmean

import pocketsphinx
from pocketsphinx import Decoder, NGramModel

from voicebot.audio.resample import StreamResampler
from voicebot.errors import AsrError
from voicebot.speech.asr import AsrResult

log = logging.getLogger(__name__)

MODEL_RATE_HZ = 16000  # the bundled acoustic model's features are computed at 16 kHz
# Initial cepstral means (CMN) for telephone audio. The bundled model's default
# ("40,3,-1") describes wideband speech; band-limited 8 kHz audio has very
# different means, and PocketSphinx's live CMN needs a few utterances to get
# there, so a new call's first answers came out wrong with the default. These
# values are the mean cepstrum of 336 other utterances (16 sentences, the 7
# voices and 3 SNRs of the evaluation, never its answers) measured with the
# decoder's own live CMN under these features; they describe the channel, not
# the voice. Re-measure them if the features (feat.params) change.
_NARROWBAND_CMN = "59.06,24.05,-49.89,45.99,-35.92,8.21,7.07,-28.59,23.27,-21.51,8.15,3.04,-13.55"
# Measured on 8 kHz μ-law answers (see the module docstring). bestpath=False: the
# lattice best path of an FSG search drops the last word(s) of a phrase ("how much
# does", "take me off"); the Viterbi result keeps them. Wider beams than the
# defaults (1e-48, 1e-48, 7e-29): the right phrase is pruned early on noisy audio.
# fsgusealtpron=False: a grammar search uses each word's first pronunciation, as the
# measurements above did with a stream's own small dictionary, also in a decoder that
# holds the whole dictionary (one kept ready for free text, or after a free-text answer).
_DECODER_OPTIONS = {"bestpath": False, "beam": 1e-60, "pbeam": 1e-60, "wbeam": 1e-40, "fsgusealtpron": False}
_LM = "lm"
# The n-gram search (free-text answers) only: no second forward pass and caps on the
# HMMs and words alive per frame. With the grammar beams alone it ran at ~1x real time
# and its end_utt took 0.3-0.9 s, all of it holding the GIL, which stalled the media
# clock of every call on the worker. With these: ~0.2x real time, end_utt ~30 ms, and
# words no worse on the same Piper and espeak answers (mostly wrong either way).
_LM_OPTIONS = {"fwdflat": False, "maxhmmpf": 3000, "maxwpf": 10}
_MAX_GRAMMAR_SEARCHES = 8  # grammars kept compiled per stream: switching back to one is free
_NO_SEARCH = object()  # a new decoder has none; the first utterance sets one up
_JSGF_WORD = re.compile(r"^[\w'.-]+$")  # JSGF would read any other character as syntax


@dataclass(frozen=True)
class SphinxModel:
    """The files of a PocketSphinx model directory (like pocketsphinx/model/en-us)."""

    hmm: Path  # acoustic model folder
    dictionary: Path
    lm: Path

    @classmethod
    def find(cls, model_dir: Path) -> SphinxModel:
        hmms = [p for p in sorted(model_dir.iterdir()) if (p / "mdef").is_file()] if model_dir.is_dir() else []
        dicts = sorted(model_dir.glob("*.dict"))
        lms = [p for p in sorted(model_dir.glob("*.lm*")) + sorted(model_dir.glob("*.arpa")) if "phone" not in p.name]
        if len(hmms) != 1 or len(dicts) != 1 or len(lms) != 1:
            raise AsrError(
                f"{model_dir} is not a PocketSphinx model: it needs one acoustic model folder (with mdef), "
                f"one .dict and one language model (.lm.bin/.lm/.arpa); found {len(hmms)}, {len(dicts)} and {len(lms)}",
                code="asr-model-invalid",
            )
        return cls(hmms[0], dicts[0], lms[0])


@dataclass(frozen=True)
class SphinxGrammar:
    jsgf: str
    pronunciations: tuple[tuple[str, str], ...]  # (word, phones) of every word the grammar uses


class PocketSphinxEngine:
    """The model files, a pronunciation look-up and the shared n-gram model; one per process."""

    name = "pocketsphinx"

    def __init__(self, language: str = "en", model_dir: str | Path | None = None) -> None:
        if model_dir is None and language.split("-")[0].lower() != "en":
            raise AsrError(
                f"PocketSphinx ships a US-English model only; language '{language}' needs its own model_dir", code="asr-model-missing"
            )
        self.language = language
        self.model = SphinxModel.find(Path(model_dir) if model_dir else Path(pocketsphinx.get_model_path()) / "en-us")
        # One decoder with the whole dictionary answers every stream's look-ups, so a
        # stream's decoder holds just its grammar's words: ~5 MB a stream instead of ~28 MB.
        try:
            self._lexicon = Decoder(hmm=str(self.model.hmm), dict=str(self.model.dictionary), lm=None, loglevel="FATAL")
        except (RuntimeError, ValueError) as exc:
            raise AsrError(f"PocketSphinx cannot load the model in {self.model.hmm.parent}: {exc}", code="asr-model-invalid") from exc
        self._lm: NGramModel | None = None
        self._lm_lock = threading.Lock()
        self._spares: list[Decoder] = []  # narrowband decoders with the whole dictionary and the n-gram search
        self._spares_lock = threading.Lock()
        self.grammar = lru_cache(maxsize=256)(self._grammar)  # built (and warned about) once per vocabulary

    def stream(self, rate_hz: int = 8000) -> PocketSphinxStream:
        return PocketSphinxStream(self, rate_hz)

    def decoder(self, narrowband: bool) -> Decoder:
        """A decoder with an empty dictionary and no search yet."""
        cmn = {"cmninit": _NARROWBAND_CMN} if narrowband else {}
        return Decoder(
            hmm=str(self.model.hmm), dict=None, lm=None, samprate=MODEL_RATE_HZ, loglevel="FATAL", dither=True, **_DECODER_OPTIONS, **cmn
        )

    def keep_free_text_decoders(self, count: int) -> None:
        """Have ``count`` narrowband decoders ready for free-text answers, for the streams to take.

        A stream's first free-text answer otherwise loads the whole dictionary and adds
        the n-gram search (~0.35 s, all of it holding the GIL, which stalls the media
        clock of every call of a worker). Built here, before the model host forks the
        workers, each worker starts with its own; a stream gives its decoder back when
        it is gone. ~35 MB each.
        """
        built = []
        while len(self._spares) + len(built) < count:
            decoder = self.decoder(narrowband=True)
            self.add_language_model(decoder)
            built.append(decoder)
        with self._spares_lock:
            self._spares.extend(built)

    def spare_decoders(self) -> int:
        with self._spares_lock:
            return len(self._spares)

    def _take_spare(self) -> Decoder | None:
        with self._spares_lock:
            return self._spares.pop() if self._spares else None

    def _give_back(self, decoder: Decoder, searches: dict) -> None:
        # a stream's finalizer, in whatever thread dropped the stream: nobody else holds this decoder
        try:
            decoder.end_utt()  # the call may have ended mid-answer
        except RuntimeError:
            pass
        decoder.activate_search(_LM)
        for name in searches.values():
            decoder.remove_search(name)
        decoder.set_cmn(_NARROWBAND_CMN)  # the next call starts from the channel's mean, as a new decoder does
        with self._spares_lock:
            self._spares.append(decoder)

    def add_language_model(self, decoder: Decoder) -> None:
        """The whole dictionary and the n-gram search (with ``_LM_OPTIONS``) into ``decoder``."""
        decoder.load_dict(str(self.model.dictionary))
        config = decoder.config  # a search reads its options from the config when it is added
        grammar_options = {key: config[key] for key in _LM_OPTIONS}
        for key, value in _LM_OPTIONS.items():
            config[key] = value
        try:
            decoder.add_lm(_LM, self.language_model())
        finally:
            for key, value in grammar_options.items():
                config[key] = value

    def language_model(self) -> NGramModel:
        """The n-gram model, loaded on first use and shared: each stream's search over it still costs ~33 MB."""
        with self._lm_lock:
            if self._lm is None:
                self._lm = NGramModel(self._lexicon.config, self._lexicon.logmath, str(self.model.lm))
            return self._lm

    def _grammar(self, phrases: tuple[str, ...]) -> SphinxGrammar | None:
        kept: dict[str, None] = {}
        unknown: set[str] = set()
        pronunciations: dict[str, str] = {}
        for phrase in phrases:
            words = phrase.lower().split()
            for word in words:
                phones = self._lexicon.lookup_word(word) if _JSGF_WORD.match(word) else None
                if phones:
                    pronunciations[word] = phones
                else:
                    unknown.add(word)
            known = [w for w in words if w in pronunciations]
            if known:
                kept.setdefault(" ".join(known), None)
        if unknown:
            log.warning("the PocketSphinx dictionary lacks %s: left out of the grammar", ", ".join(sorted(unknown)))
        if not kept:
            log.warning("no word of the vocabulary is in the PocketSphinx dictionary: recognising without a grammar")
            return None
        jsgf = "#JSGF V1.0;\ngrammar answers;\npublic <answer> = " + " | ".join(kept) + ";\n"
        return SphinxGrammar(jsgf, tuple(sorted(pronunciations.items())))


class PocketSphinxStream:
    """One call's decoder: push 20 ms frames, flush at the end of a turn. One thread per stream.

    Partials carry the best hypothesis so far, with confidence 1.0. A final's
    confidence is the mean lattice posterior of its words: how sure the decoder
    is among what the grammar allows, not whether the answer was in the grammar
    at all (an out-of-grammar answer forced onto a phrase can still score ~1.0).
    """

    def __init__(self, engine: PocketSphinxEngine, rate_hz: int) -> None:
        self.engine = engine
        self.rate_hz = rate_hz
        narrowband = rate_hz < MODEL_RATE_HZ
        spare = engine._take_spare() if narrowband else None
        self._decoder = spare or engine.decoder(narrowband=narrowband)
        self._words: set[str] = set()  # in the decoder's dictionary
        self._full_dictionary = spare is not None
        self._wanted: SphinxGrammar | None = None  # for the next utterance; None: the n-gram model
        self._applied: SphinxGrammar | None | object = _NO_SEARCH
        self._searches: dict[SphinxGrammar, str] = {}  # compiled grammars, oldest first
        if spare is not None:
            weakref.finalize(self, engine._give_back, spare, self._searches)
        self._next_search = 0
        self._resampler: StreamResampler | None = None  # set while an utterance is open
        self._partial = ""

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        """Takes effect with the next utterance: PocketSphinx cannot switch searches mid-utterance."""
        self._wanted = None if phrases is None else self.engine.grammar(tuple(phrases))

    def push(self, pcm: bytes) -> list[AsrResult]:
        if self._resampler is None:
            self._begin()
        data = self._resampler.push(pcm)
        if not data:
            return []
        self._decoder.process_raw(data)
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp else ""
        if not text or text == self._partial:
            return []
        self._partial = text
        return [AsrResult(text, 1.0, False)]

    def peek(self) -> AsrResult:
        return AsrResult(self._partial, 1.0 if self._partial else 0.0, False)

    def flush(self) -> AsrResult:
        if self._resampler is None:
            return AsrResult("", 0.0, True)
        tail = self._resampler.push(b"", last=True)
        if tail:
            self._decoder.process_raw(tail)
        self._decoder.end_utt()
        self._end()
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp else ""
        if not text:
            return AsrResult("", 0.0, True)
        posteriors = [s.prob for s in self._decoder.seg() if not _is_filler(s.word)]
        # log-domain rounding gives 1.0001 now and then
        return AsrResult(text, min(1.0, fmean(posteriors)) if posteriors else 0.0, True)

    def reset(self) -> None:
        if self._resampler is not None:
            self._decoder.end_utt()  # the hypothesis is dropped; live CMN keeps what it learnt of the line
        self._end()

    def want_hints(self, on: bool) -> None:
        """Nothing to switch: see ``AsrStream.want_hints``."""

    def _begin(self) -> None:
        if self._wanted != self._applied:
            if self._wanted is None:
                self._use_language_model()
            else:
                self._use_grammar(self._wanted)
            self._applied = self._wanted
        self._resampler = StreamResampler(self.rate_hz, MODEL_RATE_HZ)
        self._decoder.start_utt()

    def _use_grammar(self, grammar: SphinxGrammar) -> None:
        name = self._searches.pop(grammar, None)
        if name is None:
            for word, phones in grammar.pronunciations:
                if word not in self._words and not self._full_dictionary:
                    self._decoder.add_word(word, phones, False)
                    self._words.add(word)
            name = f"grammar{self._next_search}"
            self._next_search += 1
            self._decoder.add_jsgf_string(name, grammar.jsgf)  # ~20 ms for 500 phrases
            if len(self._searches) >= _MAX_GRAMMAR_SEARCHES:
                oldest = next(iter(self._searches))
                self._decoder.remove_search(self._searches.pop(oldest))
        self._searches[grammar] = name  # most recently used last
        self._decoder.activate_search(name)

    def _use_language_model(self) -> None:
        if not self._full_dictionary:
            self.engine.add_language_model(self._decoder)  # ~0.35 s holding the GIL: see keep_free_text_decoders
            self._full_dictionary = True
        self._decoder.activate_search(_LM)

    def _end(self) -> None:
        self._resampler = None
        self._partial = ""


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "["))  # <s>, </s>, <sil>, [NOISE]
