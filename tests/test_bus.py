"""The MQTT bus: settings, event schemas, and the durable outbox against a real mosquitto on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from voicebot.bus.broker import BrokerError, BrokerSettings, EmbeddedBroker
from voicebot.bus.schema import event_topic, make_event
from voicebot.events import EventRefused
from voicebot.processes import end_process, wait_listening

DATA = Path(__file__).parent / "data" / "campaign"


def test_broker_urls_take_the_password_from_the_environment_and_never_show_it() -> None:
    s = BrokerSettings.from_url("mqtts://dialer@broker.example.com", {"VOICEBOT_MQTT_PASSWORD": "s3cret"})
    assert (s.host, s.port, s.username, s.password, s.tls) == ("broker.example.com", 8883, "dialer", "s3cret", True)
    assert "s3cret" not in str(s) and "s3cret" not in repr(s)
    assert BrokerSettings.from_url("mqtt://127.0.0.1:1999", {}).port == 1999
    with pytest.raises(BrokerError, match="never written in a URL"):
        BrokerSettings.from_url("mqtt://dialer:s3cret@host", {})
    with pytest.raises(BrokerError, match="not a broker URL"):
        BrokerSettings.from_url("http://host", {})


def test_events_are_versioned_and_checked_against_their_type() -> None:
    event = make_event("call.ringing", "demo/en", 7, 1.5, "c1-a1", {"sip_code": 180, "after_ms": 12})
    assert (event.v, event.seq, event.data) == (1, 7, {"sip_code": 180, "after_ms": 12})
    assert event_topic("demo/en", "call.ringing") == "voicebot/v1/demo_en/events/call.ringing"
    with pytest.raises(EventRefused, match="event 'call.ringing': field 'sip_code': Field required"):
        make_event("call.ringing", "x", 1, 0.0, None, {"after_ms": 12})
    with pytest.raises(EventRefused, match="event kind 'campaign.custom' is not one of the campaign's events"):
        make_event("campaign.custom", "x", 1, 0.0, None, {"any": 1})  # a closed set: a new kind gets a model first


class _Subscriber:
    """A persistent-session subscriber (QoS 1) that survives a broker restart."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("voicebot/v1/+/events/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(json.loads(m.payload))
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_broker_outage_of_10_s_mid_campaign_loses_no_event_and_they_arrive_in_order(sipp, tmp_path: Path, capsys) -> None:
    port = sipp("uas_answer", "-d", "6000", "-m", "500", "-l", "100")
    dialplan = tmp_path / "campaign.yaml"
    dialplan.write_text((DATA / "campaign.yaml").read_text().replace("127.0.0.1:5999", f"127.0.0.1:{port}"))
    db = tmp_path / "bus.db"
    broker = EmbeddedBroker(tmp_path / "broker", persistence=True).start()
    subscriber = _Subscriber(broker.port)
    run = None
    try:
        assert subscriber.subscribed.wait(10)
        cmd = [
            sys.executable,
            "-m",
            "voicebot.cli",
            "run",
            str(dialplan),
            "--contacts",
            str(DATA / "contacts.csv"),
            "--db",
            str(db),
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
        ]
        run = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while len(subscriber.messages) < 5:
            assert run.poll() is None and time.monotonic() < deadline, "no events reached the subscriber"
            time.sleep(0.05)
        broker.stop()  # the broker goes away mid-campaign ...
        time.sleep(10)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            waiting = conn.execute(
                "SELECT COUNT(*) FROM events WHERE id > (SELECT last_event_id FROM sink_cursors WHERE sink = 'mqtt')"
            ).fetchone()[0]
            dialled_meanwhile = conn.execute("SELECT COUNT(*) FROM attempts WHERE created_at > ?", (time.time() - 10,)).fetchone()[0]
        broker.start()  # ... and comes back on the same port
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output[-3000:]
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            stored = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
            unpublished = conn.execute(
                "SELECT COUNT(*) FROM events WHERE id > (SELECT last_event_id FROM sink_cursors WHERE sink = 'mqtt')"
            ).fetchone()[0]
        deadline = time.monotonic() + 30
        while len({m["seq"] for m in subscriber.messages}) < len(stored) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        subscriber.stop()
        if run is not None and run.poll() is None:
            run.kill()
        broker.stop()
    first_seen: list[int] = []
    for m in subscriber.messages:
        if m["seq"] not in first_seen:
            first_seen.append(m["seq"])
    with capsys.disabled():
        print(
            f"\n  broker down 10 s: {waiting} events waited in the store, {dialled_meanwhile} calls dialled meanwhile; "
            f"{len(stored)} events stored, {len(first_seen)} received ({len(subscriber.messages) - len(first_seen)} duplicates)"
        )
    assert waiting > 0 and dialled_meanwhile > 0  # the campaign went on and its events queued up
    assert unpublished == 0
    assert first_seen == stored  # every event, each in its place
    kinds = {m["type"] for m in subscriber.messages}
    assert {"call.dialled", "call.answered", "attempt.ended", "call.node_entered"} <= kinds


def test_events_go_out_over_tls_with_a_password_that_is_never_printed(tmp_path: Path, capsys) -> None:
    """A broker that wants TLS (a private CA) and a login, as a production one would."""
    import pwd
    import ssl

    import paho.mqtt.client as mqtt
    from conftest import free_port

    from voicebot.bus.outbox import OutboxPublisher
    from voicebot.campaign.store import CampaignStore

    secret = "s3cret-Pw-7781"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
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
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "dialer", secret], check=True, capture_output=True)
    port = free_port(socket.SOCK_STREAM)
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {cert}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwd}\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
    )
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = CampaignStore.open(tmp_path / "tls.db", "tls-test")
    received: list[dict] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-subscriber")
    try:
        assert wait_listening(broker, port, 10)
        sub.tls_set(ca_certs=str(cert), cert_reqs=ssl.CERT_REQUIRED)
        sub.username_pw_set("dialer", secret)
        subscribed = threading.Event()
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("voicebot/v1/+/events/#", qos=1)
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        assert subscribed.wait(10)

        url = f"mqtts://dialer@127.0.0.1:{port}?ca={cert}"
        wrong = OutboxPublisher(store, "tls-test", BrokerSettings.from_url(url, {"VOICEBOT_MQTT_PASSWORD": "Wr0ng-Pw-9931"})).start()
        time.sleep(1.5)
        assert not wrong.connected  # refused: the broker checks the login
        wrong.stop()
        store.add_event("call.answered", "c1-a1", {"setup_ms": 120}, time.time())
        right = OutboxPublisher(store, "tls-test", BrokerSettings.from_url(url, {"VOICEBOT_MQTT_PASSWORD": secret})).start()
        assert right.flush(10), "the event did not go out over TLS"
        right.stop()
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received and received[0]["data"] == {"setup_ms": 120}
    finally:
        sub.loop_stop()
        store.close()
        end_process(broker)
    out = capsys.readouterr()
    printed = out.out + out.err
    assert "broker_unreachable" in printed and "mqtts://dialer:***@127.0.0.1" in printed  # the refusal was logged ...
    assert secret not in printed and "Wr0ng-Pw-9931" not in printed  # ... without a password


def test_an_event_the_sink_cannot_deliver_is_dead_lettered_and_the_rest_go_out_in_order(tmp_path: Path) -> None:
    from voicebot.bus.outbox import OutboxPublisher
    from voicebot.campaign.store import CampaignStore

    db = tmp_path / "dead.db"
    store = CampaignStore.open(db, "dead-letters")
    store.add_event("call.answered", "c1-a1", {"setup_ms": 120}, 1.0)
    # written by an older voicebot, or by hand: it no longer fits its kind's model, so no sink can send it
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO events (ts, attempt_id, kind, payload) VALUES (2.0, 'c1-a1', 'call.ringing', '{\"sip_code\": \"ringing\"}')"
        )
    bad_id = 2
    for i in range(3):
        store.add_event("call.node_entered", "c1-a1", {"node": f"n{i}"}, 3.0 + i)
    broker = EmbeddedBroker(tmp_path / "broker").start()
    subscriber = _Subscriber(broker.port)
    publisher = None
    try:
        assert subscriber.subscribed.wait(10)
        publisher = OutboxPublisher(store, "dead-letters", broker.settings).start()
        assert publisher.flush(15), f"the sink stopped with {publisher.backlog} events left"
        deadline = time.monotonic() + 10
        while len(subscriber.messages) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if publisher is not None:
            publisher.stop()
        subscriber.stop()
        broker.stop()
    assert [m["seq"] for m in subscriber.messages] == [1, 3, 4, 5]  # everything else went out, in order
    (dead,) = store.dead_letters("mqtt")
    assert (dead.event_id, dead.kind) == (bad_id, "call.ringing")
    assert "event 'call.ringing': field 'sip_code'" in dead.reason and "'ringing'" in dead.reason
    assert store.dead_letters("webhook") == [] and store.events_for("webhook")[1].id == bad_id  # other sinks: their own cursor
    assert publisher.dead_lettered == 1 and publisher.published == 4
    store.close()
