"""`voicebot bench understanding`: the noise it adds, how it compares decisions, and one tiny real run.

Accuracy is what the benchmark measures, never what a test asserts: the run below checks the shape
of the result and the typed path (pure), not how well the recogniser did.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.frames import NARROWBAND, to_array
from voicebot.audio.noise import active_rms, babble, make_noise, mix_at_snr, noisy_line, pink_noise
from voicebot.bench.common import BenchError
from voicebot.bench.understanding import (
    ACTED,
    CONFIRM,
    REPROMPT,
    AsrTime,
    AudioSet,
    Decision,
    Row,
    TimedStream,
    UnderstandingOptions,
    Utterance,
    agree,
    contact_for,
    load_utterances,
    meets_expectation,
    rates,
    run,
    spread,
    worst,
    wrong_action,
)
from voicebot.dialplan import load_dialplan
from voicebot.script.engine import ScriptEngine
from voicebot.session import CallSession

ROOT = Path(__file__).resolve().parent.parent
DIALPLAN = ROOT / "dialplans" / "demo_en.yaml"
RATE_HZ = NARROWBAND.rate_hz

SAMPLE = """\
# node, answer, expected intent ("none": a reprompt)
- {node: greeting, text: "Sure, go ahead.", expect: "yes"}
- {node: greeting, text: "Please take my number off your list.", expect: "dnc"}
- {node: pitch, text: "Oh hi, hang on, I just spilled coffee all over my desk.", expect: "none"}
- {node: propose_meeting, text: "The Thursday one, please.", expect: "second_option"}
- {node: confirm_meeting, text: "Yes, that works.", expect: "yes"}
"""

_STARTS_AT = all("at" in inspect.signature(f).parameters for f in (ScriptEngine.start, CallSession.start))
needs_start_at = pytest.mark.skipif(not _STARTS_AT, reason="needs ScriptEngine.start(at=) and CallSession.start(ts_ms, at=)")


@pytest.fixture(scope="module")
def graph():  # noqa: ANN201
    return load_dialplan(DIALPLAN).graph


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioSet:
    return AudioSet(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def speech(audio: AudioSet) -> bytes:
    return audio.clean("Please take my number off your list.", "en-us")


# --- noise ----------------------------------------------------------------------------------


def _snr_db(clean: bytes, mixed: bytes) -> float:
    x = to_array(clean).astype(np.float64)
    added = to_array(mixed).astype(np.float64) - x
    return 20 * np.log10(active_rms(x) / np.sqrt(np.mean(added**2)))


def _psd(x: np.ndarray, n: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(n)
    segments = [x[i : i + n] * window for i in range(0, x.size - n, n // 2)]
    return np.fft.rfftfreq(n, 1 / RATE_HZ), np.mean([np.abs(np.fft.rfft(s)) ** 2 for s in segments], axis=0)


def _flatness(x: np.ndarray) -> float:
    f, p = _psd(x)
    p = p[(f >= 100) & (f <= 3800)]
    return float(np.exp(np.mean(np.log(p))) / np.mean(p))


@pytest.mark.parametrize("kind", ["pink", "babble", "white"])
@pytest.mark.parametrize("snr_db", [20.0, 10.0])
def test_noise_is_mixed_at_the_snr_asked(kind: str, snr_db: float, speech: bytes, audio: AudioSet) -> None:
    noise = make_noise(kind, len(speech) // 2, seed=7, talkers=audio.talkers())
    assert abs(_snr_db(speech, mix_at_snr(speech, noise, snr_db)) - snr_db) < 0.5


def test_the_snr_holds_through_the_ulaw_line_at_20_db(speech: bytes, audio: AudioSet) -> None:
    for kind in ("pink", "babble"):
        line = noisy_line(speech, kind, 20.0, seed=3, talkers=audio.talkers())
        assert len(line) == len(speech)
        assert abs(_snr_db(speech, line) - 20.0) < 0.5


def test_pink_noise_falls_3_db_per_octave() -> None:
    f, p = _psd(pink_noise(RATE_HZ * 20, seed=3))
    band = (f >= 50) & (f <= 3000)
    slope_db_per_octave = np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0]
    assert -3.5 < slope_db_per_octave < -2.5


def test_babble_is_speech_shaped_not_white(audio: AudioSet) -> None:
    talkers = audio.talkers()
    assert 4 <= len(talkers) <= 6
    n = RATE_HZ * 10
    white = _flatness(make_noise("white", n, seed=1))
    assert white > 0.9
    assert _flatness(babble(talkers, n, seed=1)) < 0.5 * white


def test_noise_is_deterministic_by_seed(audio: AudioSet) -> None:
    talkers = audio.talkers()
    for kind in ("pink", "babble", "white"):
        a, b, c = (make_noise(kind, 4000, seed, talkers) for seed in (5, 5, 6))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert abs(np.sqrt(np.mean(a**2)) - 1.0) < 1e-9
    with pytest.raises(ValueError, match="unknown noise"):
        make_noise("brown", 10)


# --- deciding -------------------------------------------------------------------------------

YES = Decision(ACTED, "yes", "discovery", "intent")
DNC = Decision(ACTED, "dnc", "dnc_goodbye", "global")
CONFIRM_DNC = Decision(CONFIRM, "dnc", "greeting", "confirm")
CONFIRM_YES = Decision(CONFIRM, "yes", "greeting", "confirm")
NO_MATCH = Decision(REPROMPT, None, "greeting", "no_match")
NO_INPUT = Decision(REPROMPT, None, "greeting", "no_input")


@pytest.mark.parametrize(
    ("typed", "spoken", "agrees", "wrong"),
    [
        (YES, YES, True, False),
        (DNC, CONFIRM_DNC, True, False),  # the person would confirm
        (CONFIRM_DNC, DNC, True, False),
        (NO_MATCH, NO_INPUT, True, False),  # both reprompt
        (YES, NO_MATCH, False, False),  # lost to a reprompt: not an action
        (YES, DNC, False, True),
        (NO_MATCH, DNC, False, True),  # acted on what the words do not say
        (YES, CONFIRM_DNC, False, False),  # caught by the confirmation
        (CONFIRM_YES, DNC, False, True),
        (YES, Decision(ACTED, "yes", "pitch", "intent"), False, True),  # same intent, elsewhere
        (YES, Decision(ACTED, "go_on", "discovery", "intent"), True, False),  # another intent, the same path
    ],
)
def test_decisions_are_compared_by_kind_and_intent(typed: Decision, spoken: Decision, agrees: bool, wrong: bool) -> None:
    assert agree(typed, spoken) is agrees
    assert wrong_action(typed, spoken) is wrong


def test_the_typed_path_is_held_to_the_files_expectation() -> None:
    assert meets_expectation(YES, "yes") and meets_expectation(CONFIRM_DNC, "dnc")
    assert meets_expectation(NO_MATCH, "none") and not meets_expectation(YES, "none")
    assert not meets_expectation(NO_MATCH, "yes")


def test_rates_and_worst_examples_from_hand_made_rows() -> None:
    def row(typed: Decision, spoken: Decision, snr: float, text: str) -> Row:
        return Row("en-us", "pink", snr, Utterance("greeting", text, "yes"), typed, spoken, text, 2.0, AsrTime(0.2, 0.1))

    rows = [
        row(YES, YES, 20, "a"),
        row(YES, DNC, 10, "b"),
        row(YES, DNC, 20, "c"),
        row(YES, NO_MATCH, 20, "d"),
        row(YES, CONFIRM_DNC, 20, "e"),
    ]
    r = rates(rows)
    assert (r["n"], r["agreement"], r["wrong_action"], r["no_match_rate"], r["confirmations"]) == (5, 0.2, 0.4, 0.2, 0.2)
    assert (r["asr_cpu_s_per_audio_s"], r["rtf"]) == (0.1, 0.05)
    captured = Decision(ACTED, None, "discovery", "capture")  # a slot filled where the typed words matched "yes"
    assert (rates([row(YES, captured, 20, "f")])["agreement"], rates([row(YES, captured, 20, "f")])["wrong_action"]) == (1.0, 0.0)
    assert [w["said"] for w in worst(rows)] == ["c", "b", "e", "d"]  # wrong actions (cleaner first), confirmed, lost
    assert len(worst(rows, limit=2)) == 2


def test_the_asr_stream_is_timed_and_passed_through() -> None:
    from voicebot.speech.asr import AsrResult

    final = AsrResult("take me off your lute", 0.4, True, (("take me off your list", 0.8),))

    class Stream:
        rate_hz = 8000

        def push(self, pcm: bytes) -> list:
            sum(range(20000))
            return ["partial"]

        def flush(self) -> AsrResult:
            return final

    spent = AsrTime()
    timed = TimedStream(Stream(), spent)
    assert timed.push(b"\0\0") == ["partial"] and spent.last is None
    assert timed.flush() is final
    assert spent.cpu_s > 0 and spent.wall_s > 0
    # what the recogniser said last is kept for the records, its grammar hint with it
    assert spent.last == {"text": "take me off your lute", "confidence": 0.4, "hints": [["take me off your list", 0.8]]}
    assert not hasattr(timed, "peek")  # only what the engine has


# --- the file -------------------------------------------------------------------------------


def test_the_test_file_is_checked_against_the_dialplan(tmp_path: Path, graph) -> None:  # noqa: ANN001
    good = tmp_path / "good.yaml"
    good.write_text(SAMPLE, encoding="utf-8")
    assert [u.expect for u in load_utterances(good, graph)] == ["yes", "dnc", "none", "second_option", "yes"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        '- {node: greeting, text: "x", expect: "maybe"}\n- {node: nowhere, text: "y", expect: "none"}\n'
        '- {node: goodbye_meeting, text: "z", expect: "none"}\n- {text: "w"}\n',
        encoding="utf-8",
    )
    with pytest.raises(BenchError) as err:
        load_utterances(bad, graph)
    message = str(err.value)
    assert "4 bad item(s)" in message and "no intent 'maybe'" in message and "'nowhere'" in message and "item 4" in message


def test_limit_spreads_over_the_file() -> None:
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), None) == [0, 1, 2, 3] == spread(list(range(4)), 9)


def test_a_missing_test_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from voicebot.cli import main

    missing = tmp_path / "nope.yaml"
    assert main(["bench", "understanding", "--data", str(missing), "--workdir", str(tmp_path)]) == 1
    assert f"test utterance file {missing} does not exist" in capsys.readouterr().err


def test_every_node_renders_when_a_conversation_starts_there(graph) -> None:  # noqa: ANN001
    contact = contact_for(graph)
    assert contact["first_name"] == "Anna" and contact["meeting_time"]


# --- one tiny real run ----------------------------------------------------------------------


@needs_start_at
def test_a_tiny_run_compares_both_paths(tmp_path: Path, graph) -> None:  # noqa: ANN001
    data = tmp_path / "sample.yaml"
    data.write_text(SAMPLE, encoding="utf-8")
    opts = UnderstandingOptions(tmp_path / "work", data=data, dialplan=DIALPLAN, voices=("en-us",), snrs_db=(20.0,), limit=2)
    (tmp_path / "work").mkdir()
    result = run(opts)

    assert result["benchmark"] == "understanding"
    assert result["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert "independently" in result["data"]["note"]
    assert (result["data"]["utterances_in_file"], result["data"]["utterances_used"]) == (5, 2)
    at_20 = result["by_snr"]["20"]
    assert at_20["n"] == 4 and set(at_20["by_noise"]) == {"pink", "babble"} and set(at_20["by_voice"]) == {"en-us"}
    assert 0 <= at_20["agreement"] <= 1 and 0 <= at_20["wrong_action"] <= 1
    assert at_20["asr_cpu_s_per_audio_s"] > 0 and result["asr_engine"]
    assert result["typed"]["accuracy"] is not None
    assert set(result["targets"]) == {"wrong_action_20db", "wrong_action_10db", "agreement_20db", "agreement_10db"}
    assert result["targets"]["agreement_10db"]["met"] is None  # not measured
    assert len(Path(result["records"]).read_text().splitlines()) == 4
    # the audio is cached: a second run synthesises nothing
    again = run(opts)
    assert again["audio_cache"]["synthesised"] == 0 and again["typed"] == result["typed"]
