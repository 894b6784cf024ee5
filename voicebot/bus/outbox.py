"""The MQTT sink: events are written to the campaign store first and published from there.

A thread with its own asyncio loop reads the events past the ``mqtt`` sink's cursor
in the store, in id order, publishes each at QoS 1 (``publish`` returns once the
broker has acknowledged it) and only then moves the cursor. While the broker is
down the campaign keeps dialling and the events wait in the store (``backlog``); on
reconnect they go out in order. A crash between the broker's ack and the cursor's
move sends that one event again: delivery is at least once, and ``seq`` lets
consumers drop the duplicate.

An event this sink cannot deliver (its stored payload no longer fits its kind's
model, or the broker refuses that one message) goes to the store's dead-letter
table with the reason, and the sink goes on with the next: one bad event never
stops the others. Losing the connection is no such failure: the event waits.
Other sinks (webhooks) read the same events with cursors of their own.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aiomqtt
import paho.mqtt.client as mqtt
import structlog

from voicebot.bus.broker import BrokerLink, BrokerSettings
from voicebot.bus.schema import event_topic, make_event
from voicebot.campaign.store import CampaignStore, StoredEvent
from voicebot.events import EventRefused

_log = structlog.get_logger("voicebot.bus")
_IDLE_S = 0.1  # how often an idle publisher looks for new events
SINK = "mqtt"


class OutboxPublisher:
    def __init__(self, store: CampaignStore, campaign: str, broker: BrokerSettings, sink: str = SINK) -> None:
        self.store = store
        self.campaign = campaign
        self.broker = broker
        self.sink = sink
        self.link = BrokerLink(broker, "outbox")
        self.published = 0
        self.dead_lettered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="outbox", daemon=True)

    def start(self) -> OutboxPublisher:
        self._thread.start()
        return self

    @property
    def backlog(self) -> int:
        return self.store.sink_backlog(self.sink)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every stored event is delivered or dead-lettered (or the timeout); True if none is left."""
        deadline = time.monotonic() + timeout_s
        while self.backlog and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.backlog == 0

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def _run(self) -> None:
        await self.link.serve(f"voicebot-outbox-{self.campaign}", self._publish_until_stopped, self._stop.is_set)

    async def _publish_until_stopped(self, client: aiomqtt.Client) -> None:
        _log.info("broker_connected", broker=str(self.broker), backlog=self.backlog)
        while not self._stop.is_set():
            batch = self.store.events_for(self.sink, 200)
            if not batch:
                await asyncio.sleep(_IDLE_S)
                continue
            for stored in batch:
                await self._deliver(client, stored)

    async def _deliver(self, client: aiomqtt.Client, stored: StoredEvent) -> None:
        try:
            event = make_event(stored.kind, self.campaign, stored.id, stored.ts, stored.attempt_id, stored.payload)
            payload = event.model_dump_json()
        except EventRefused as exc:
            self._dead_letter(stored, str(exc))
            return
        try:
            await client.publish(event_topic(self.campaign, stored.kind), payload, qos=1)
        except ValueError as exc:  # paho refuses this one message (its size): no connection would take it
            self._dead_letter(stored, f"MQTT cannot carry it: {exc}")
            return
        except aiomqtt.MqttCodeError as exc:
            if exc.rc in (mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_CONN_LOST):
                raise  # the connection, not the event: it waits in the store for the next one
            self._dead_letter(stored, f"the broker refused it: {exc}")
            return
        self.store.delivered(self.sink, stored.id)  # only once the broker has it
        self.published += 1

    def _dead_letter(self, stored: StoredEvent, reason: str) -> None:
        _log.warning("event_dead_lettered", sink=self.sink, event_id=stored.id, kind=stored.kind, why=reason)
        self.store.dead_letter(self.sink, stored, reason, time.time())
        self.dead_lettered += 1
