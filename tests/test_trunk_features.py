"""Trunk features against real peers on 127.0.0.1: TLS, G.722, an outbound proxy, keys sent to a phone menu.

The bot side is the stand-in PlaybackSession (a tone out, everything heard
recorded) or the real session where the script matters.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
from conftest import chunks_found, events_until_ended, tone

from voicebot.audio.frames import NARROWBAND, read_wav, write_wav
from voicebot.config import Trunk
from voicebot.peers.baresip import BaresipPeer
from voicebot.peers.customer import speak


def _call(trunk: Trunk, tmp_path: Path, number: str, hang_up_after_ms: int = 3000):
    from voicebot.calls.messages import Dial, Ended
    from voicebot.telephony.playback import playback_sessions
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    w = WorkerProcess(WorkerSettings(trunk, playback_sessions(tone(), tmp_path, hang_up_after_ms)))
    try:
        w.start(timeout_s=15)
        w.send(Dial("a1", number))
        (ended,) = [e for e in events_until_ended(w, {"a1"}, timeout_s=30) if isinstance(e, Ended)]
    finally:
        assert w.stop(timeout_s=10) == 0
    return ended


def _customer_voice(tmp_path: Path) -> tuple[Path, bytes]:
    voice = b"".join(speak("hello, who is calling please", NARROWBAND, snr_db=None))
    wav = tmp_path / "customer.wav"
    write_wav(wav, voice + bytes(16000 * 10), 8000)
    return wav, voice


def _assert_audio_both_ways(peer: BaresipPeer, tmp_path: Path, voice: bytes, min_score: float) -> float:
    peer.wait_idle(timeout_s=10)
    (rec,) = peer.recordings()
    heard, rate = read_wav(rec.heard)
    samples = np.frombuffer(heard, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples[: rate * 2]))
    assert abs(np.argmax(spectrum) * rate / (2 * rate) - 440) < 10  # the bot's 440 Hz tone reached the peer
    bot_heard, _ = read_wav(tmp_path / "a1.wav")
    found = chunks_found(bot_heard, voice[4800:], min_score)  # from 0.3 s: the first ms pass before media is linked
    assert found >= 0.8, found  # the peer's voice reached the bot
    return found


def test_a_call_over_tls(tmp_path: Path) -> None:
    cert = tmp_path / "peer.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(cert),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wav, voice = _customer_voice(tmp_path)
    with BaresipPeer("tls", tmp_path / "peers", wav, tls_certificate=cert) as peer:
        # baresip serves only TLS on this port (UDP and TCP are on sip_port), so an answer there came over TLS
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{peer.tls_port}", transport="tls")
        ended = _call(trunk, tmp_path, "tls")
        assert (ended.outcome, ended.sip_code) == ("answered", 200)
        _assert_audio_both_ways(peer, tmp_path, voice, 0.9)


def test_a_call_in_g722_is_bridged_at_8_khz(tmp_path: Path, capsys) -> None:
    wav, voice = _customer_voice(tmp_path)
    with BaresipPeer("wideband", tmp_path / "peers", wav, codecs=("g722",)) as peer:
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{peer.sip_port}", codecs=("G722",))
        ended = _call(trunk, tmp_path, "wideband")
        assert (ended.outcome, ended.sip_code) == ("answered", 200)
        log = (peer.home / "baresip.log").read_text(errors="replace")
        assert "Set audio encoder: G722 16000Hz" in log  # G.722 was negotiated, not G.711
        found = _assert_audio_both_ways(peer, tmp_path, voice, 0.7)  # resampled 16 kHz -> 8 kHz, not bit-exact
    with capsys.disabled():
        print(f"\n  G.722 call: {found:.0%} of the customer's voice found in the bot's 8 kHz recording")


def test_an_outbound_proxy_gets_the_invite_for_the_carrier_uri(sipp, tmp_path: Path) -> None:
    trace = tmp_path / "proxy_messages.log"
    port = sipp("uas_answer", "-m", "1", "-trace_msg", "-message_file", str(trace))
    # the carrier's host never resolves: only the proxy can have carried the call
    trunk = Trunk(uri_template="sip:{number}@carrier.invalid", proxy=f"sip:127.0.0.1:{port}")
    ended = _call(trunk, tmp_path, "4930123456", hang_up_after_ms=500)
    assert (ended.outcome, ended.sip_code) == ("answered", 200)
    messages = trace.read_text(errors="replace")
    assert re.search(r"^INVITE sip:4930123456@carrier\.invalid SIP/2\.0", messages, re.M), messages[:800]
    assert re.search(rf"^Route: <sip:127\.0\.0\.1:{port};lr>", messages, re.M | re.I), messages[:1500]
    assert re.search(r"^X-Voicebot-Attempt: a1\s*$", messages, re.M), messages[:1500]  # the attempt id travels with the call


def test_keys_from_the_script_reach_the_far_end_as_rfc2833(tmp_path: Path) -> None:
    from voicebot.apps.bot_session import BotSessions
    from voicebot.calls.messages import Dial, Ended
    from voicebot.telephony.worker import WorkerProcess, WorkerSettings

    menu = tmp_path / "menu.wav"
    write_wav(menu, bytes(16000 * 15), 8000)
    with BaresipPeer("menu", tmp_path / "peers", menu) as peer:
        trunk = Trunk(uri_template=f"sip:{{number}}@127.0.0.1:{peer.sip_port}")
        dialplan = Path(__file__).parent / "data" / "ivr.yaml"
        w = WorkerProcess(WorkerSettings(trunk, BotSessions(dialplan, tmp_path / "prompts", calls_dir=tmp_path / "calls")))
        try:
            w.start(timeout_s=60)
            w.send(Dial("k1", "menu"))
            (ended,) = [e for e in events_until_ended(w, {"k1"}, timeout_s=30) if isinstance(e, Ended)]
        finally:
            assert w.stop(timeout_s=10) == 0
        peer.wait_idle(timeout_s=10)
        log = (peer.home / "baresip.log").read_text(errors="replace")
    assert ended.session_outcome == "done"
    assert re.findall(r"received event: '(.)' \(end=1\)", log) == ["1", "2", "#"], log[-2000:]
