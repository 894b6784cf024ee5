"""The durable outbox: events are written to the campaign store first and published from there.

A thread with its own asyncio loop reads the store's unpublished events in id
order, publishes each at QoS 1 (``publish`` returns once the broker has
acknowledged it) and only then marks it published. While the broker is down
the campaign keeps dialling and the events wait in the store (``backlog``);
on reconnect they go out in order. A crash between the broker's ack and the
mark sends that one event again: delivery is at least once, and ``seq`` lets
consumers drop the duplicate.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aiomqtt
import structlog

from voicebot.bus.broker import BrokerLink, BrokerSettings
from voicebot.bus.schema import event_topic, make_event
from voicebot.campaign.store import CampaignStore

_log = structlog.get_logger("voicebot.bus")
_IDLE_S = 0.1  # how often an idle publisher looks for new events


class OutboxPublisher:
    def __init__(self, store: CampaignStore, campaign: str, broker: BrokerSettings) -> None:
        self.store = store
        self.campaign = campaign
        self.broker = broker
        self.link = BrokerLink(broker, "outbox")
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="outbox", daemon=True)

    def start(self) -> OutboxPublisher:
        self._thread.start()
        return self

    @property
    def backlog(self) -> int:
        return self.store.unpublished_count()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every stored event is published (or the timeout); True if none is left."""
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
            batch = self.store.unpublished_events(200)
            if not batch:
                await asyncio.sleep(_IDLE_S)
                continue
            for stored in batch:
                event = make_event(stored.kind, self.campaign, stored.id, stored.ts, stored.attempt_id, stored.payload)
                await client.publish(event_topic(self.campaign, stored.kind), event.model_dump_json(), qos=1)
                self.store.mark_published([stored.id])  # only once the broker has it
                self.published += 1
