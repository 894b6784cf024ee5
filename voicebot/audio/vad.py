"""Voice activity: webrtcvad per frame, an echo gate, and a hysteresis segmenter.

The segmenter is a pure state machine over booleans and milliseconds (like Home
Assistant's voice segmenter): speech starts after ``start_ms`` of voice and ends
after ``end_ms`` without, so a click or a breath does not start a turn and a
short pause between words does not end one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import webrtcvad

from voicebot.audio.frames import AudioFormat, rms_dbfs


class VoiceDetector:
    """Is there a voice in this frame? webrtcvad plus a level floor.

    The floor keeps line noise that webrtcvad sometimes takes for voice out;
    the echo gate ignores frames no louder than what the bot itself is playing
    would return as line echo (a Geigel-style double-talk test).
    """

    def __init__(
        self, fmt: AudioFormat, aggressiveness: int = 2, min_dbfs: float = -50.0, echo_margin_db: float = 12.0, echo_window_ms: int = 400
    ) -> None:
        if fmt.frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad takes 10, 20 or 30 ms frames")
        self.fmt = fmt
        self._vad = webrtcvad.Vad(aggressiveness)
        self.min_dbfs = min_dbfs
        self.echo_margin_db = echo_margin_db
        self._played: deque[float] = deque(maxlen=max(1, echo_window_ms // fmt.frame_ms))

    def note_played(self, frame: bytes) -> None:
        """Tell the detector what the bot sent in this tick (silence included)."""
        self._played.append(rms_dbfs(frame))

    def is_voice(self, frame: bytes) -> bool:
        level = rms_dbfs(frame)
        if level < self.min_dbfs:
            return False
        loudest_played = max(self._played, default=float("-inf"))
        if level < loudest_played - self.echo_margin_db:
            return False  # no louder than our own echo would be
        return self._vad.is_speech(frame, self.fmt.rate_hz)


class SpeechState(Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True)
class SpeechStarted:
    onset_ms: int  # when the first voiced frame of this speech arrived
    ts_ms: int  # when it was confirmed


@dataclass(frozen=True)
class SpeechStopped:
    last_voice_ms: int  # end of the last voiced frame
    ts_ms: int


class SpeechSegmenter:
    """quiet → starting → speaking → stopping → quiet, over per-frame voice flags."""

    def __init__(self, start_ms: int = 100, end_ms: int = 300, frame_ms: int = 20) -> None:
        self.start_ms, self.end_ms, self.frame_ms = start_ms, end_ms, frame_ms
        self.reset()

    def reset(self) -> None:
        self.state = SpeechState.QUIET
        self._voiced_ms = 0
        self._unvoiced_ms = 0
        self._onset_ms = 0
        self._last_voice_end_ms = 0

    @property
    def last_voice_ms(self) -> int:
        """The end of the last voiced frame seen."""
        return self._last_voice_end_ms

    @property
    def speaking(self) -> bool:
        return self.state in (SpeechState.SPEAKING, SpeechState.STOPPING)

    def process(self, voiced: bool, ts_ms: int) -> SpeechStarted | SpeechStopped | None:
        """``ts_ms`` is the start of this frame."""
        f = self.frame_ms
        if voiced:
            self._last_voice_end_ms = ts_ms + f
        if self.state is SpeechState.QUIET:
            if voiced:
                self.state, self._onset_ms, self._voiced_ms, self._unvoiced_ms = SpeechState.STARTING, ts_ms, f, 0
                return self._maybe_start(ts_ms)
            return None
        if self.state is SpeechState.STARTING:
            if voiced:
                self._voiced_ms += f
                self._unvoiced_ms = 0
                return self._maybe_start(ts_ms)
            self._unvoiced_ms += f
            if self._unvoiced_ms > f:  # one dropped frame is tolerated inside an onset
                self.state = SpeechState.QUIET
            return None
        if self.state is SpeechState.SPEAKING:
            if not voiced:
                self.state, self._unvoiced_ms = SpeechState.STOPPING, f
                return self._maybe_stop(ts_ms)
            return None
        # STOPPING
        if voiced:
            self.state = SpeechState.SPEAKING
            return None
        self._unvoiced_ms += f
        return self._maybe_stop(ts_ms)

    def _maybe_start(self, ts_ms: int) -> SpeechStarted | None:
        if self._voiced_ms >= self.start_ms:
            self.state = SpeechState.SPEAKING
            return SpeechStarted(self._onset_ms, ts_ms + self.frame_ms)
        return None

    def _maybe_stop(self, ts_ms: int) -> SpeechStopped | None:
        if self._unvoiced_ms >= self.end_ms:
            self.state = SpeechState.QUIET
            return SpeechStopped(self._last_voice_end_ms, ts_ms + self.frame_ms)
        return None
