"""Pure audio state machines fed with booleans and milliseconds: segmenter, barge-in, endpointing, playout."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.audio.bargein import BargeInDetector, Interruption, backchannel_phrases, backchannel_words, words_of
from voicebot.audio.endpoint import Endpointer
from voicebot.audio.frames import NARROWBAND, WIDEBAND, gain, interleave, mix, rms_dbfs, split_frames
from voicebot.audio.playout import PlaybackFinished, PlaybackStarted, Playout
from voicebot.audio.resample import StreamResampler, resample
from voicebot.audio.vad import SpeechSegmenter, SpeechStarted, SpeechStopped, VoiceDetector


def run_segmenter(flags: str, start_ms=100, end_ms=300):
    seg = SpeechSegmenter(start_ms, end_ms)
    return [(i * 20, e) for i, f in enumerate(flags) if (e := seg.process(f == "1", i * 20))]


def test_segmenter_starts_after_start_ms_and_reports_onset():
    events = run_segmenter("00111111")
    assert events == [(120, SpeechStarted(onset_ms=40, ts_ms=140))]


def test_segmenter_ignores_a_click():
    assert run_segmenter("0110000000") == []


def test_segmenter_tolerates_one_dropped_frame_in_onset():
    events = run_segmenter("1101110")
    assert isinstance(events[0][1], SpeechStarted) and events[0][1].onset_ms == 0


def test_segmenter_ends_after_end_ms_of_silence_and_bridges_short_pauses():
    flags = "111111" + "0000" + "1111" + "0" * 20
    events = [e for _, e in run_segmenter(flags)]
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    stop = events[1]
    assert stop.last_voice_ms == 14 * 20
    assert stop.ts_ms - stop.last_voice_ms == 300


BC = backchannel_words(backchannel_phrases("en"))


def test_words_of_drops_unk_and_splits_hyphens():
    assert words_of("[unk] Uh-huh, yeah") == ["uh", "huh", "yeah"]


def test_backchannel_resumes():
    d = BargeInDetector(BC)
    assert d.speech_started(1000, prompt_playing=True, allowed=True) is Interruption.PAUSE
    assert d.heard("uh huh", remaining_ms=3000) is None
    assert d.speech_stopped(remaining_ms=3000) is Interruption.RESUME
    assert not d.pending


def speak(d, ms):
    for _ in range(ms // 20):
        d.voiced(20)


def test_real_words_stop_as_soon_as_heard():
    d = BargeInDetector(BC)
    d.speech_started(1000, True, True)
    speak(d, 300)
    assert d.heard("yeah", 3000) is None
    assert d.heard("yeah stop i am busy", 3000) is Interruption.STOP


def test_noise_without_words_resumes_after_confirm_window():
    d = BargeInDetector(BC, confirm_ms=900)
    d.speech_started(1000, True, True)
    assert d.tick(1800) is None
    assert d.tick(1900) is Interruption.RESUME


def test_no_pause_when_barge_in_not_allowed_or_nothing_plays():
    d = BargeInDetector(BC)
    assert d.speech_started(0, prompt_playing=True, allowed=False) is None
    assert d.speech_started(0, prompt_playing=False, allowed=True) is None


def test_yes_at_the_end_of_a_question_is_an_answer():
    d = BargeInDetector(BC, answer_tail_ms=800)
    d.speech_started(0, True, True)
    speak(d, 300)
    assert d.heard("yes", remaining_ms=500) is Interruption.STOP


def test_function_words_alone_do_not_interrupt():
    d = BargeInDetector(BC, function_words=frozenset({"of", "the"}))
    d.speech_started(0, True, True)
    speak(d, 400)
    assert d.heard("of", 3000) is None
    assert d.heard("of course not", 3000) is Interruption.STOP


def test_a_short_burst_is_never_words():
    # a grammar-bound recogniser hears a cough as some word: too short to count
    d = BargeInDetector(BC, min_speech_ms=250)
    d.speech_started(0, True, True)
    speak(d, 120)
    assert d.heard("that", 3000) is None
    assert d.speech_stopped(3000) is Interruption.RESUME


def test_backchannels_per_language_and_override():
    ru = BargeInDetector(backchannel_words(backchannel_phrases("ru")))
    ru.speech_started(0, True, True)
    speak(ru, 400)
    assert ru.heard("угу да-да", 5000) is None
    assert ru.heard("угу да-да стоп", 5000) is Interruption.STOP
    custom = backchannel_words(backchannel_phrases("en", ["aha"]))
    assert custom == frozenset({"aha"})


def test_endpointer_default_and_complete_silence():
    ep = Endpointer(end_ms=600, complete_end_ms=240)
    ep.begin(0)
    for t in range(0, 1000, 20):
        assert ep.process(True, t) is None
    # 220 ms of silence with an incomplete answer: keep waiting
    results = [ep.process(False, 1000 + i * 20, complete=False) for i in range(11)]
    assert not any(results)
    end = ep.process(False, 1220, complete=True)
    assert end and end.reason == "complete" and end.last_voice_ms == 1000 and end.ts_ms == 1240


def test_endpointer_taken_up_late_counts_silence_from_the_last_voice():
    # a barge-in decided 400 ms after the onset, in the pause after "stop,": counted from the onset, the
    # turn ended inside that pause, before the words that followed it
    ep = Endpointer(end_ms=600, complete_end_ms=240)
    ep.begin(1000, last_voice_ms=1380)
    assert all(ep.process(False, t) is None for t in range(1400, 1960, 20))
    end = ep.process(False, 1960)
    assert end and end.reason == "silence" and end.last_voice_ms == 1380
    late = Endpointer(end_ms=600, complete_end_ms=240)
    late.begin(1000)  # the onset alone, as before
    assert any(late.process(False, t) for t in range(1400, 1960, 20))


def test_endpointer_silence_and_max_length():
    ep = Endpointer(end_ms=600, max_turn_ms=2000)
    ep.begin(0)
    ends = [ep.process(False, t) for t in range(0, 700, 20)]
    assert [e.reason for e in ends if e] == ["silence"]
    ep.begin(0)
    ends = [ep.process(True, t) for t in range(0, 2100, 20)]
    assert [e.reason for e in ends if e] == ["max_length"]
    assert ep.process(True, 3000) is None  # not in a turn any more


def test_playout_plays_pauses_resumes_and_reports():
    po = Playout(NARROWBAND)
    n = NARROWBAND.bytes_per_frame
    po.play("a", b"\x01\x00" * (n // 2) * 3)  # 60 ms
    assert po.read_frame(0)[:2] == b"\x01\x00"
    po.pause()
    assert po.read_frame(20) == bytes(n)
    po.resume()
    po.read_frame(40)
    assert po.current == ("a", 40, 60)
    po.read_frame(60)
    events = po.take_events()
    assert events == [PlaybackStarted("a", 0), PlaybackFinished("a", 60, 60, False, 80)]
    assert not po.active and po.read_frame(80) == bytes(n)


def test_playout_clear_reports_what_was_heard():
    po = Playout(NARROWBAND)
    po.play("a", bytes(NARROWBAND.nbytes(1000)))
    po.play("b", bytes(NARROWBAND.nbytes(500)))
    for t in range(0, 300, 20):
        po.read_frame(t)
    dropped = po.clear(300)
    assert dropped == [PlaybackFinished("a", 300, 1000, True, 300), PlaybackFinished("b", 0, 500, True, 300)]
    assert not po.active and not po.paused


def test_playout_pads_the_last_frame():
    po = Playout(WIDEBAND)
    po.play("x", b"\x05\x00" * 10)
    assert len(po.read_frame(0)) == WIDEBAND.bytes_per_frame


def tone(freq, ms, rate, dbfs=-20.0):
    t = np.arange(rate * ms // 1000) / rate
    amp = 32767 * 10 ** (dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def test_levels_gain_mix_interleave():
    a = tone(440, 100, 8000, -20)
    assert rms_dbfs(a) == pytest.approx(-20, abs=0.2)
    assert rms_dbfs(gain(a, -20)) == pytest.approx(-40, abs=0.2)
    assert rms_dbfs(bytes(320)) == float("-inf")
    assert len(mix(a, a[:100])) == len(a)
    st = interleave(b"\x01\x00\x02\x00", b"\x03\x00")
    assert st == b"\x01\x00\x03\x00\x02\x00\x00\x00"
    assert [len(f) for f in split_frames(a[:500], NARROWBAND)] == [320, 320]


def test_resample_keeps_duration_and_pitch():
    a = tone(440, 1000, 16000)
    b = resample(a, 16000, 8000)
    assert len(b) == len(a) // 2
    spectrum = np.abs(np.fft.rfft(np.frombuffer(b, "<i2")))
    assert abs(np.argmax(spectrum) * 8000 / (len(b) // 2) - 440) < 5
    stream = StreamResampler(8000, 16000)
    out = b"".join(stream.push(f) for f in split_frames(b, NARROWBAND)) + stream.push(b"", last=True)
    assert abs(len(out) - len(a)) <= 64


def test_voice_detector_level_floor_and_echo_gate():
    det = VoiceDetector(NARROWBAND, min_dbfs=-50, echo_margin_db=12)
    quiet = gain(tone(300, 20, 8000), -45)  # -65 dBFS
    assert not det.is_voice(quiet)
    loud_out = tone(300, 20, 8000, -10)
    det.note_played(loud_out)
    echo = gain(loud_out, -20)
    assert not det.is_voice(echo)  # our own prompt coming back 20 dB down
