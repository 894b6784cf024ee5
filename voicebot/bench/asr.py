"""Recognition speed and accuracy on telephone audio, restricted as the sessions restrict it.

Each engine hears every test utterance spoken by espeak-ng voices and passed
through a simulated line (8 kHz, G.711 μ-law, noise 20 dB below the speech),
with its vocabulary set to all the utterances of its language plus the
backchannels, as a node that listens sets it. Real-time factor = decoding CPU
wall time / audio duration (push + flush, one stream at a time); accuracy =
the share of utterances recognised exactly (words, case and punctuation aside).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio.frames import NARROWBAND
from voicebot.bench.common import machine, target
from voicebot.bench.stats import summary

ENGLISH = (
    "yes",
    "no",
    "yes sure",
    "not really",
    "tell me more",
    "what does it cost",
    "how much does it cost",
    "i am busy",
    "call me tomorrow",
    "stop calling me",
    "talk to a person",
    "who is this",
)
KOREAN = ("네", "아니요", "네 좋아요", "좋아요", "관심 없어요", "아니요 관심 없어요", "나중에", "나중에 다시 전화해 주세요")
CASES = (
    ("pocketsphinx", "en", ENGLISH, ("en-us", "en-gb", "en-us+f3")),
    ("vosk", "ko", KOREAN, ("ko", "ko+f3")),
)
SNR_DB = 20.0


@dataclass(frozen=True)
class AsrOptions:
    workdir: Path


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def run(opts: AsrOptions) -> dict:
    from voicebot.config import AsrSettings
    from voicebot.errors import AsrError
    from voicebot.peers.customer import speak
    from voicebot.speech.select import make_asr_engine

    engines = []
    for engine_name, lang, phrases, voices in CASES:
        started = time.perf_counter()
        try:
            engine = make_asr_engine(AsrSettings(engine=engine_name), lang, None)
        except AsrError as e:
            engines.append({"engine": engine_name, "language": lang, "skipped": str(e)})
            continue
        load_s = time.perf_counter() - started
        results, rtfs, decode_s, audio_s = [], [], 0.0, 0.0
        for voice in voices:
            for i, text in enumerate(phrases):
                pcm = b"".join(speak(text, NARROWBAND, voice=voice, snr_db=SNR_DB, seed=i))
                stream = engine.stream(NARROWBAND.rate_hz)
                stream.set_vocabulary(list(phrases))
                t0 = time.perf_counter()
                stream.push(pcm)
                heard = stream.flush().text
                spent = time.perf_counter() - t0
                seconds = len(pcm) / 2 / NARROWBAND.rate_hz
                decode_s += spent
                audio_s += seconds
                rtfs.append(spent / seconds)
                results.append({"voice": voice, "said": text, "heard": heard, "ok": _norm(heard) == _norm(text)})
        correct = sum(r["ok"] for r in results)
        engines.append(
            {
                "engine": engine_name,
                "language": lang,
                "model": getattr(engine, "name", engine_name),
                "voices": list(voices),
                "utterances": len(results),
                "correct": correct,
                "accuracy": round(correct / len(results), 3) if results else None,
                "rtf": round(decode_s / audio_s, 4) if audio_s else None,
                "rtf_per_utterance": summary(rtfs, (50, 95), 4),
                "load_s": round(load_s, 2),
                "errors": [r for r in results if not r["ok"]],
            }
        )
    measured = [e for e in engines if "accuracy" in e]
    worst = min((e["accuracy"] for e in measured), default=None)
    summary_line = "; ".join(
        f"{e['engine']} {e['language']}: "
        + (f"accuracy {e['accuracy']:.0%}, RTF {e['rtf']}" if "accuracy" in e else f"skipped ({e['skipped']})")
        for e in engines
    )
    return {
        "benchmark": "asr",
        "machine": machine(),
        "method": {
            "audio": f"espeak-ng voices, 8 kHz μ-law, white noise {SNR_DB:g} dB below the speech",
            "restriction": "vocabulary = the language's test utterances (Vosk grammar / PocketSphinx JSGF), as a listening node sets it",
            "accuracy": "exact utterance match (not intent accuracy: the matcher would forgive some slips)",
        },
        "engines": engines,
        "summary": summary_line,
        "targets": {
            "understanding": target(
                "≥ 95 % accuracy at 8 kHz μ-law with noise, several voices (DESIGN: intent accuracy)",
                worst,
                None if worst is None else worst >= 0.95 if len(measured) == len(CASES) else None,
                "exact-utterance accuracy, a lower bound on intent accuracy",
            ),
        },
    }
