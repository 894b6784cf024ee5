"""Piper TTS with the real joe voice, the prompt cache, and prerendering a script's prompts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pocketsphinx import Decoder

from voicebot.audio.frames import AudioFormat, rms_dbfs, split_frames, write_wav
from voicebot.audio.resample import resample
from voicebot.campaign.prompts import prerender, script_prompts
from voicebot.dialplan import load_dialplan
from voicebot.errors import TtsError
from voicebot.speech.piper_tts import PiperTts, find_voice
from voicebot.speech.prompt_cache import PromptCache

DEMO = Path(__file__).parent.parent / "dialplans" / "demo_en.yaml"
VOICE = "en_US-joe-medium"
# Chosen because PocketSphinx hears every key word of it reliably; it hears Piper's
# "hello" as "oh" whether or not the leading silence is trimmed.
SENTENCE = "Hi, we could schedule a meeting with our engineers on Tuesday morning."
KEY_WORDS = {"schedule", "meeting", "tuesday", "morning"}
WORDS_PER_S = 2.5  # 150 words a minute, a usual speaking rate


class CountingTts:
    """Wraps a TTS and records what it was asked to synthesise."""

    def __init__(self, inner, voice_id: str | None = None) -> None:
        self.inner = inner
        self.voice_id = voice_id or inner.voice_id
        self.texts: list[str] = []

    def synthesize(self, text: str, rate_hz: int) -> bytes:
        self.texts.append(text)
        return self.inner.synthesize(text, rate_hz)


class SilentTts:
    """Instant stand-in for tests about what gets rendered, not how it sounds: 0.3 s of silence per word."""

    voice_id = "silent"

    def synthesize(self, text: str, rate_hz: int) -> bytes:
        return AudioFormat(rate_hz).silence(300 * len(text.split()))


@pytest.fixture(scope="session")
def tts() -> PiperTts:
    return PiperTts.from_settings(load_dialplan(DEMO).dialplan.speech.tts)


@pytest.fixture(scope="session")
def decoder() -> Decoder:
    return Decoder(samprate=16000)  # the bundled US-English model is wideband


@pytest.fixture(scope="module")
def demo():
    return load_dialplan(DEMO).graph


def recognise(decoder: Decoder, pcm16k: bytes) -> set[str]:
    decoder.start_utt()
    decoder.process_raw(pcm16k, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return set(hyp.hypstr.split()) if hyp else set()


# --- the voice ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", [8000, 16000])
def test_synthesis_at_call_rates(tts, rate_hz):
    pcm = tts.synthesize(SENTENCE, rate_hz)
    fmt = AudioFormat(rate_hz)
    assert len(pcm) % 2 == 0
    expected_s = len(SENTENCE.split()) / WORDS_PER_S
    assert 0.5 * expected_s <= len(pcm) / (2 * rate_hz) <= 1.5 * expected_s
    assert rms_dbfs(pcm) > -30
    levels = [rms_dbfs(frame) for frame in split_frames(pcm, fmt)]
    speaking = [i for i, db in enumerate(levels) if db > -40]
    assert speaking[0] * fmt.frame_ms <= 60, "the prompt starts within 60 ms"
    # After the last word: its decay and the fade-out, not Piper's 150-250 ms of silence.
    assert (len(levels) - 1 - speaking[-1]) * fmt.frame_ms <= 160
    assert levels[0] < -40 and levels[-1] < -50, "faded in and out: no click at the edges"


@pytest.mark.parametrize("rate_hz", [8000, 16000])
def test_words_come_back_through_recognition(tts, decoder, rate_hz):
    # Piper samples noise, so each rendering differs a little: one key word may be
    # missed, and about one rendering in a hundred loses two (measured at 8 kHz),
    # so a second rendering gets a chance. Broken audio fails both.
    heard = []
    for _ in range(2):
        heard.append(recognise(decoder, resample(tts.synthesize(SENTENCE, rate_hz), rate_hz, 16000)))
        if len(KEY_WORDS & heard[-1]) >= len(KEY_WORDS) - 1:
            return
    pytest.fail(f"key words {sorted(KEY_WORDS)} not heard; recognised: {heard}")


def test_voice_id_names_the_voice_and_its_settings(tts):
    assert VOICE in tts.voice_id and "length_scale=1" in tts.voice_id
    assert tts.native_rate_hz == 22050


def test_unknown_voice_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(TtsError) as err:
        PiperTts("xx_XX-nobody-low", models_dir=tmp_path)
    assert err.value.code == "tts-voice-not-found"
    assert str(tmp_path / "xx_XX-nobody-low" / "xx_XX-nobody-low.onnx") in str(err.value)
    assert "voicebot models pull xx_XX-nobody-low" in str(err.value)


def test_voice_in_models_dir_wins_over_the_package(tmp_path):
    packaged = find_voice(VOICE)
    (tmp_path / VOICE).mkdir()
    for source in (packaged.model, packaged.config):
        (tmp_path / VOICE / source.name).symlink_to(source)
    found = find_voice(VOICE, tmp_path)
    assert found.model == tmp_path / VOICE / f"{VOICE}.onnx"
    assert found.config == tmp_path / VOICE / f"{VOICE}.onnx.json"


def test_onnx_path_without_its_config_is_refused(tmp_path):
    model = tmp_path / "voice.onnx"
    model.symlink_to(find_voice(VOICE).model)
    with pytest.raises(TtsError, match="no config next to it"):
        find_voice(model)


# --- the cache --------------------------------------------------------------------------------


def test_second_get_is_a_hit_without_synthesis(tts, tmp_path):
    counting = CountingTts(tts)
    cache = PromptCache(tmp_path, counting)
    first = cache.get("One moment, please.", 8000)
    assert cache.get("One moment, please.", 8000) == first
    assert counting.texts == ["One moment, please."]
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    assert cache.stats.synthesis_s > 0 and cache.stats.audio_s == pytest.approx(len(first) / 16000)
    # A second process (a media worker) opening the same directory finds it too.
    assert PromptCache(tmp_path, counting).has("One moment, please.", 8000)


def test_rate_and_voice_are_part_of_the_key(tts, tmp_path):
    counting = CountingTts(tts)
    cache = PromptCache(tmp_path, counting)
    narrow, wide = cache.get("Yes.", 8000), cache.get("Yes.", 16000)
    assert counting.texts == ["Yes.", "Yes."]
    assert len(wide) == pytest.approx(2 * len(narrow), rel=0.2)  # Piper varies phoneme durations a little
    assert cache.path("Yes.", 8000) != cache.path("Yes.", 16000)
    other_voice = PromptCache(tmp_path, CountingTts(tts, voice_id="another-voice"))
    assert not other_voice.has("Yes.", 8000)


def test_entries_are_written_whole_with_no_temp_files_left(tts, tmp_path):
    cache = PromptCache(tmp_path, tts)
    cache.get("Goodbye.", 8000)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [cache.path("Goodbye.", 8000)]
    assert files[0].parent.name == files[0].stem[:2]


@pytest.mark.parametrize("damage", ["truncate", "flip_a_bit", "empty"])
def test_damaged_entry_is_detected_and_rendered_again(tts, tmp_path, damage):
    counting = CountingTts(tts)
    cache = PromptCache(tmp_path, counting)
    good = cache.get("Thank you.", 8000)
    path = cache.path("Thank you.", 8000)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_a_bit":
        data[-100] ^= 0x01
    else:
        data = bytearray()
    path.write_bytes(data)
    assert not cache.has("Thank you.", 8000)
    again = cache.get("Thank you.", 8000)
    assert len(counting.texts) == 2 and cache.stats.corrupt == 1
    # a fresh rendering of the same text: Piper samples its durations, so two renderings differ (seen: 21 %)
    assert abs(len(again) - len(good)) < 0.4 * len(good)
    assert cache.has("Thank you.", 8000)


# --- the script's prompts ------------------------------------------------------------------------


def test_demo_prompts_are_classified_by_what_they_depend_on(demo):
    prompts = {p.where: p for p in script_prompts(demo)}
    greeting = prompts["nodes.greeting.say"]
    assert greeting.kind == "contact" and greeting.contact_fields == ("first_name", "company")
    assert prompts["nodes.goodbye_not_interested.say"].kind == "static"
    # Only script variables: the same for every contact (variables hide contact fields).
    assert prompts["global_intents.who.say"].kind == "static"
    confirm = prompts["nodes.confirm_meeting.say"]
    assert confirm.kind == "runtime"
    assert confirm.known_values == {"meeting_time": ("Tuesday at ten in the morning", "Thursday at three in the afternoon")}
    assert confirm.open_fields == ("meeting_time",)  # the capture slot: any time the person names
    assert {"defaults.no_match_reprompt", "nodes.propose_meeting.intents.no.say", "nodes.confirm_meeting.reprompt"} <= set(prompts)


def test_prerender_renders_static_prompts_once_and_personal_ones_per_contact(demo, tmp_path):
    counting = CountingTts(SilentTts())
    cache = PromptCache(tmp_path, counting)
    prompts = script_prompts(demo)
    static_texts = {p.text for p in prompts if p.kind == "static"}
    contacts = [
        {"first_name": "Anna", "company": "Northwind Traders"},
        {"first_name": "Ben"},
        {"first_name": "Anna", "company": "Northwind Traders"},  # the same texts as the first
    ]
    report = prerender(demo, cache, 8000, contacts)

    assert len(counting.texts) == len(set(counting.texts)), "nothing is synthesised twice"
    assert report.contacts == 3 and report.failures == []
    known_meeting_texts = 4  # say and reprompt of confirm_meeting, for each of the two offered times
    personal = 2 * 2  # greeting and goodbye_meeting for Anna and for Ben
    assert report.synthesized == len(counting.texts) == len(static_texts) + known_meeting_texts + personal
    assert report.duplicates == 2  # the third contact's greeting and goodbye
    assert "Hi Ben, this is Alex from Cloudline. We help companies like yours cut" in " ".join(counting.texts)
    assert "Does Thursday at three in the afternoon work for you?" in counting.texts
    assert [p.where for p in report.midcall] == ["nodes.confirm_meeting.say", "nodes.confirm_meeting.reprompt"]

    again = prerender(demo, cache, 8000, contacts[:1])
    assert again.synthesized == 0 and again.rendered == len(static_texts) + known_meeting_texts + 2


def test_prerender_plays_recordings_enumerates_set_values_and_reports_missing_fields(tmp_path):
    write_wav(tmp_path / "hello.wav", AudioFormat(22050).silence(500), 22050)
    (tmp_path / "plan.yaml").write_text(
        """
version: 1
campaign:
  name: t
  trunk: {uri_template: "sip:{number}@127.0.0.1:5080"}
  contact_fields: [first_name]
script:
  start: hello
  nodes:
    hello:
      say: {wav: hello.wav, text: "Hello."}
      intents:
        "yes": {phrases: ["yes"], set: {plan: gold}, next: confirm}
        "no": {phrases: ["no"], set: {plan: silver}, next: confirm}
    confirm:
      say: "{first_name}, {plan} it is. When shall we talk?"
      capture: {slot: when, type: time, next: bye}
    bye:
      say: "Talk to you {when|soon}."
      hangup: done
"""
    )
    graph = load_dialplan(tmp_path / "plan.yaml").graph
    counting = CountingTts(SilentTts())
    cache = PromptCache(tmp_path / "cache", counting)
    report = prerender(graph, cache, 8000, [{"first_name": "Ann"}, {"phone": "+15550100"}])

    assert sorted(counting.texts) == sorted(
        [
            "Sorry, I didn't catch that.",
            "Are you still there?",  # the script defaults
            "Ann, gold it is. When shall we talk?",
            "Ann, silver it is. When shall we talk?",
            "Talk to you soon.",  # before the slot is captured, the template's default
        ]
    )
    assert len(cache.get_wav(tmp_path / "hello.wav", 8000)) == AudioFormat(8000).nbytes(500)
    assert report.synthesized == 6 and cache.stats.hits == 1  # the recording was converted once, by prerender
    assert [p.where for p in report.midcall] == ["nodes.bye.say"]
    assert [(f.where, f.contact) for f in report.failures] == [("nodes.confirm.say", 1)]
    assert "first_name" in report.failures[0].message
