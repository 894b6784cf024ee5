"""Campaign control over MQTT: pause, resume, stop, concurrency.

A command is one JSON object on ``voicebot/v1/<campaign>/control``::

    {"command": "pause"}                      dial nothing new; calls in progress go on; the run waits
    {"command": "resume"}                     dial again
    {"command": "stop"}                       end the calls in progress now and end the run (resumable later)
    {"command": "concurrency", "value": 20}   at most 20 calls at once (up to what the workers take)

plus optional ``"id"`` (echoed back) and ``"by"`` (who asked, for the record).
Who may send them is the broker's business: give the dialer's broker user
read access to this topic and write access only to the people allowed to
steer campaigns (see the mosquitto ACL in docker/mosquitto/acl).

The listener only decodes: each command (or the reason it was refused) goes
onto ``commands`` for the campaign run, which applies it on its own thread and
records the outcome as a ``campaign.control`` event, so the sender sees it on
the events topic and it stays in the store.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Literal

import aiomqtt
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from voicebot.bus.broker import BrokerLink, BrokerSettings, run_together
from voicebot.bus.schema import TOPIC_ROOT, topic_segment

MAX_CONCURRENCY = 10_000


class ControlCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Literal["pause", "resume", "stop", "concurrency"]
    value: int | None = None
    id: str = ""
    by: str = ""

    @model_validator(mode="after")
    def _value_fits(self) -> ControlCommand:
        if self.command == "concurrency":
            if self.value is None or not 1 <= self.value <= MAX_CONCURRENCY:
                raise ValueError(f"concurrency needs a value from 1 to {MAX_CONCURRENCY}")
        elif self.value is not None:
            raise ValueError(f"{self.command} takes no value")
        return self


class RefusedCommand(BaseModel):
    """A message on the control topic that is not a command: why, and the start of what came."""

    error: str
    payload: str


def control_topic(campaign: str) -> str:
    return f"{TOPIC_ROOT}/{topic_segment(campaign)}/control"


def parse_command(payload: bytes) -> ControlCommand | RefusedCommand:
    try:
        return ControlCommand.model_validate_json(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "command"
        return RefusedCommand(error=f"{where}: {first['msg']}", payload=payload[:200].decode("utf-8", "replace"))


class ControlListener:
    """Subscribes to the campaign's control topic on its own thread; ``commands`` is what came in."""

    def __init__(self, campaign: str, broker: BrokerSettings) -> None:
        self.campaign = campaign
        self.broker = broker
        self.commands: queue.SimpleQueue[ControlCommand | RefusedCommand] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self.link = BrokerLink(broker, "control")
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="control", daemon=True)

    def start(self) -> ControlListener:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    async def _run(self) -> None:
        await self.link.serve(f"voicebot-control-{self.campaign}", self._serve, self._stop.is_set)
        self.subscribed.clear()

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.subscribed.clear()
        await client.subscribe(control_topic(self.campaign), qos=1)
        self.subscribed.set()
        await run_together([self._listen(client)], self._stop.is_set)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.commands.put(parse_command(message.payload))
