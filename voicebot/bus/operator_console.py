"""`voicebot operator`: a terminal for a live operator, showing each call the bot hands over.

It listens to ``handoff.requested`` (and ``attempt.ended``, to say how the
handoff went) on the campaigns' event topics and shows, for each handoff, what
the operator continues from: who the person is (the contact card), what was
said so far, the script node the call reached, the transfer target and the
briefing the bot speaks in a warm handoff. It only reads from the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
from pydantic import ValidationError
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from voicebot.bus.broker import BrokerLink, BrokerSettings
from voicebot.bus.schema import TOPIC_ROOT, Event, HandoffRequested, topic_segment


def handoff_panel(event: Event) -> Panel:
    """One incoming handoff as the operator reads it."""
    h = HandoffRequested.model_validate(event.data)
    card = Table.grid(padding=(0, 2))
    card.add_column(style="bold")
    card.add_column()
    for name, value in h.contact.items():
        card.add_row(name, str(value))
    said = Text()
    for line in h.transcript:
        who = line.get("speaker", "?")
        said.append(f"{'bot' if who == 'bot' else 'customer':>8}: ", style="cyan" if who == "bot" else "yellow")
        said.append(f"{line.get('text', '')}\n")
    parts: list = [
        Text(f"{h.mode} to {h.operator or h.uri} ({h.uri}); the script reached node '{h.node}'", style="dim"),
        Text("Contact", style="bold underline"),
        card,
        Text("Conversation so far", style="bold underline"),
        said,
    ]
    if h.briefing:
        parts += [Text("Briefing", style="bold underline"), Text(h.briefing)]
    title = f"Incoming call: {h.contact.get('first_name', '') or h.contact.get('phone', '') or event.attempt_id}"
    return Panel(Group(*parts), title=title, subtitle=f"{event.campaign} · {event.attempt_id}", expand=False)


class OperatorConsole:
    def __init__(self, broker: BrokerSettings, campaign: str | None, console: Console, exit_after: int | None = None) -> None:
        self.broker = broker
        self.campaign = campaign
        self.console = console
        self.exit_after = exit_after
        self.shown = 0
        self._handed_over: set[str] = set()  # attempts shown here: their end is worth a line
        self._done = False

    def topics(self) -> list[str]:
        campaign = topic_segment(self.campaign) if self.campaign else "+"
        return [f"{TOPIC_ROOT}/{campaign}/events/handoff.requested", f"{TOPIC_ROOT}/{campaign}/events/attempt.ended"]

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        asyncio.run(self._run(on_ready))

    async def _run(self, on_ready: Callable[[], None] | None) -> None:
        def outage(error: str) -> None:  # the operator sees it on the screen, not only in a log
            self.console.print(f"broker {self.broker} unreachable ({error}); retrying", style="red", markup=False)

        link = BrokerLink(self.broker, "operator", on_outage=outage)
        await link.serve(f"voicebot-operator-{id(self):x}", lambda client: self._serve(client, on_ready), lambda: self._done)

    async def _serve(self, client: aiomqtt.Client, on_ready: Callable[[], None] | None) -> None:
        for topic in self.topics():
            await client.subscribe(topic, qos=1)
        where = f"campaign '{self.campaign}'" if self.campaign else "every campaign"
        self.console.print(f"waiting for handoffs on {self.broker} ({where}); Ctrl-C to quit", style="dim")
        if on_ready is not None:
            on_ready()
        async for message in client.messages:
            self.show(str(message.topic), message.payload)
            if self.exit_after is not None and self.shown >= self.exit_after and not self._handed_over:
                self._done = True  # that many handoffs shown, and each of their calls has ended
                return

    def show(self, topic: str, payload: bytes) -> None:
        try:
            event = Event.model_validate_json(payload)
            if event.type == "handoff.requested":
                panel = handoff_panel(event)
        except (ValidationError, ValueError) as e:
            first = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            self.console.print(f"ignored a message on {topic} that is not a voicebot event: {first}", style="red", markup=False)
            return
        if event.type == "handoff.requested":
            self._handed_over.add(event.attempt_id or "")
            self.console.print(panel)
            self.shown += 1
        elif event.type == "attempt.ended" and event.attempt_id in self._handed_over:
            self._handed_over.discard(event.attempt_id)
            how = event.data.get("handoff") or "not handed over"
            self.console.print(
                f"{event.attempt_id}: call ended, handoff {how}, outcome {event.data.get('outcome')}",
                style="green" if how in ("transferred", "bridged") else "red",
                markup=False,
            )
