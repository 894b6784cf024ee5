"""End of turn: how long to wait in silence before the person's turn is over.

Voice-agent frameworks wait 500-800 ms of silence. We wait less when what was
said already completes one of the node's expected answers (``complete``), and
the default otherwise; a turn that never pauses is cut at ``max_turn_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndOfTurn:
    ts_ms: int  # when the decision was taken
    last_voice_ms: int  # end of the last voiced frame
    reason: str  # silence | complete | max_length


class Endpointer:
    def __init__(self, end_ms: int = 600, complete_end_ms: int = 240, max_turn_ms: int = 15000, frame_ms: int = 20) -> None:
        self.end_ms, self.complete_end_ms, self.max_turn_ms, self.frame_ms = end_ms, complete_end_ms, max_turn_ms, frame_ms
        self.reset()

    def reset(self) -> None:
        self._start_ms: int | None = None
        self._last_voice_ms = 0

    @property
    def in_turn(self) -> bool:
        return self._start_ms is not None

    def begin(self, onset_ms: int, last_voice_ms: int | None = None) -> None:
        """A turn that began at ``onset_ms``; ``last_voice_ms`` when it is taken up later (a barge-in
        decided while the person spoke), so that the silence is counted from their last voice, not the onset."""
        if self._start_ms is None:
            self._start_ms = onset_ms
            self._last_voice_ms = onset_ms if last_voice_ms is None else max(onset_ms, last_voice_ms)

    def process(self, voiced: bool, ts_ms: int, complete: bool = False) -> EndOfTurn | None:
        """Per frame (``ts_ms`` = frame start) once a turn has begun."""
        if self._start_ms is None:
            return None
        end = ts_ms + self.frame_ms
        if voiced:
            self._last_voice_ms = end
        silence = end - self._last_voice_ms
        reason = None
        if complete and silence >= self.complete_end_ms:
            reason = "complete"
        elif silence >= self.end_ms:
            reason = "silence"
        elif end - self._start_ms >= self.max_turn_ms:
            reason = "max_length"
        if reason is None:
            return None
        result = EndOfTurn(end, self._last_voice_ms, reason)
        self.reset()
        return result
