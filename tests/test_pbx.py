"""The demo's simulated PBX: a stateless SIP router in front of a baresip with one account per number."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from conftest import events_until_ended, tone

from voicebot.audio.frames import write_wav
from voicebot.config import Trunk
from voicebot.peers.baresip import Account, BaresipPeer
from voicebot.peers.pbx import SipRouter


def test_the_router_answers_busy_and_unknown_numbers_and_forwards_the_rest(tmp_path: Path) -> None:
    from voicebot.calls.messages import Ended
    from voicebot.telephony.playback import playback_sessions
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    voice = tmp_path / "voice.wav"
    write_wav(voice, tone(300, 2.0) + bytes(16000 * 5), 8000)
    accounts = (Account("+12125550100"), Account("+12125550102", answer=False))
    with (
        BaresipPeer("pbx", tmp_path / "peers", voice, accounts=accounts) as peer,
        SipRouter(("127.0.0.1", peer.sip_port), routes={"+12125550100", "+12125550102"}, busy={"+12125550101"}) as router,
    ):
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{router.port}")
        w = WorkerProcess(WorkerSettings(trunk, playback_sessions(tone(), tmp_path, 2000), ring_timeout_s=3))
        try:
            w.start(timeout_s=15)
            numbers = {"answers": "+12125550100", "busy": "+12125550101", "rings": "+12125550102", "unknown": "+12125550199"}
            for attempt, number in numbers.items():
                from voicebot.calls.messages import Dial

                w.send(Dial(attempt, number))
            ended = {e.attempt_id: e for e in events_until_ended(w, set(numbers), timeout_s=20) if isinstance(e, Ended)}
        finally:
            assert w.stop(timeout_s=10) == 0
        # garbage does not stop it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00\x01 not sip at all", ("127.0.0.1", router.port))
            s.sendto(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\n\r\n", ("127.0.0.1", router.port))
        deadline = time.monotonic() + 2
        while router.dropped < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert router.dropped == 2
    got = {a: (e.outcome, e.sip_code) for a, e in ended.items()}
    assert got == {"answers": ("answered", 200), "busy": ("busy", 486), "rings": ("no_answer", 487), "unknown": ("invalid_number", 404)}
    assert ended["answers"].frames_in >= 90  # the call carried audio for its 2 s
    assert router.answered_locally == 2 and router.forwarded >= 6
