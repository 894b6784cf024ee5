"""The session thread's inbox: control goes ahead of audio, audio is bounded per call and dropped, never blocked."""

from __future__ import annotations

import threading
import time

import pytest

from voicebot.telephony.inbox import (
    Close,
    Dtmf,
    Inbound,
    LocalHangup,
    RemoteHangup,
    SessionInbox,
    Start,
    TransferResult,
    deliver,
)


def _frame(n: int) -> Inbound:
    return Inbound(bytes([n % 256]) * 320, n * 20)


def _drain(inbox: SessionInbox) -> list[tuple[str, object]]:
    out = []
    while (item := inbox.get(timeout_s=0)) is not None:
        attempt_id, _, message = item
        out.append((attempt_id, message))
    return out


def test_a_hangup_and_a_key_go_ahead_of_audio_already_waiting() -> None:
    inbox = SessionInbox()
    inbox.put("a", None, Start(0))
    for n in range(3):
        inbox.put("a", None, _frame(n))
    inbox.put("a", None, Dtmf("5", 60))
    inbox.put("a", None, RemoteHangup(80))
    got = [m for _, m in _drain(inbox)]
    assert got[:3] == [Start(0), Dtmf("5", 60), RemoteHangup(80)]  # control first, in the order posted
    assert got[3:] == [_frame(0), _frame(1), _frame(2)]  # then the audio, in order


def test_a_full_backlog_drops_the_calls_oldest_frames_and_counts_them() -> None:
    inbox = SessionInbox(audio_frames_per_call=4)
    started = time.perf_counter()
    for n in range(10):
        inbox.put("a", None, _frame(n))  # nobody is reading: put must still return at once
    assert time.perf_counter() - started < 0.1
    assert [m for _, m in _drain(inbox)] == [_frame(n) for n in range(6, 10)]
    assert inbox.take_dropped("a") == 6 and inbox.take_dropped("a") == 0


def test_calls_take_turns_so_one_busy_call_does_not_starve_another() -> None:
    inbox = SessionInbox()
    for n in range(5):
        inbox.put("busy", None, _frame(n))
    inbox.put("quiet", None, _frame(100))
    order = [a for a, _ in _drain(inbox)]
    assert order[:2] == ["busy", "quiet"] and order.count("busy") == 5


def test_audio_left_when_a_call_closes_is_dropped_and_late_frames_too() -> None:
    inbox = SessionInbox()
    inbox.put("a", None, _frame(0))
    inbox.put("a", None, _frame(1))
    inbox.put("a", None, Close())
    inbox.put("b", None, _frame(2))
    assert _drain(inbox) == [("a", Close()), ("b", _frame(2))]
    inbox.put("a", None, _frame(3))  # a tick still on its way from the clock thread
    assert _drain(inbox) == []


def test_shutting_wakes_the_reader_after_the_control_still_queued() -> None:
    inbox = SessionInbox()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: inbox.get(), None)))
    reader.start()
    inbox.put("a", None, LocalHangup(40, "stopped"))
    inbox.put("a", None, _frame(1))
    inbox.shut()
    reader.join(5)
    assert not reader.is_alive()
    assert [m for _, _, m in got][0] == LocalHangup(40, "stopped")


class _Session:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        return lambda *args: self.calls.append((name, *args))


@pytest.mark.parametrize(
    ("message", "call"),
    [
        (Start(0), ("start", 0)),
        (Inbound(b"\0\0", 20), ("on_inbound", b"\0\0", 20)),
        (Dtmf("#", 40), ("dtmf", "#", 40)),
        (RemoteHangup(60), ("remote_hangup", 60)),
        (LocalHangup(80, "timeout"), ("local_hangup", 80, "timeout")),
        (TransferResult(False, 100, "busy"), ("transfer_result", False, 100, "busy")),
    ],
)
def test_each_message_reaches_its_session_method(message, call) -> None:
    session = _Session()
    deliver(session, message)
    assert session.calls == [call]
