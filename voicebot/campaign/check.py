"""`voicebot contacts check`: what an import of a contacts file would do, without dialling anything.

The file is imported by the same code as ``voicebot run`` (``importer.import_campaign_contacts``,
the DNC list first, the dialplan's column mapping, extensions setting and default
region) into a throwaway store, and the report is read back from that store: bad
rows, duplicates, numbers on the DNC list, contacts per time zone and per tag, and
when each zone's calling window next opens.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from voicebot.campaign.contacts import RowProblem
from voicebot.campaign.importer import ImportReport, add_campaign_dnc, import_campaign_contacts
from voicebot.campaign.schedule import contact_zone, next_window_start
from voicebot.campaign.store import CampaignStore
from voicebot.config import Campaign, ContactsImport


@dataclass(frozen=True)
class ZoneCount:
    zone: str  # the zone the window is judged in (a contact without one: the window's default)
    contacts: int  # pending contacts (not on the DNC list)
    window_opens: datetime  # now, if it is open now
    by_default: int = 0  # of them, contacts whose number gives no single zone (the window's default_timezone)

    def as_dict(self, now: datetime) -> dict[str, object]:
        return {
            "zone": self.zone,
            "contacts": self.contacts,
            "window_opens": self.window_opens.astimezone(UTC).isoformat(),
            "open_now": self.window_opens <= now,
            "by_default": self.by_default,
        }


@dataclass
class CheckReport:
    imported: ImportReport
    dnc_numbers: list[tuple[int, str]] = field(default_factory=list)  # (row, number) of the file's numbers on the DNC list
    zones: list[ZoneCount] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)
    dnc_problems: list[RowProblem] = field(default_factory=list)

    @property
    def problems(self) -> list[RowProblem]:
        return self.imported.problems + self.dnc_problems

    def as_dict(self, now: datetime) -> dict[str, object]:
        i = self.imported
        return {
            "file": i.source,
            "rows": i.rows,
            "contacts": i.contacts,
            "duplicates": i.duplicates,
            "dnc": i.dnc,
            "dnc_numbers": [{"row": row, "phone": phone} for row, phone in self.dnc_numbers],
            "problems": [{"row": p.row, "column": p.column, "value": p.value, "message": str(p)} for p in self.problems],
            "zones": [z.as_dict(now) for z in self.zones],
            "tags": self.tags,
        }

    def to_json(self, now: datetime) -> str:
        return json.dumps(self.as_dict(now), ensure_ascii=False, indent=2)


def check_contacts(
    path: Path,
    campaign: Campaign,
    mapping: ContactsImport,
    dnc_file: Path | None,
    now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Import ``path`` as ``voicebot run`` would, into a store that is thrown away, and report on it."""
    with tempfile.TemporaryDirectory(prefix="voicebot-check-") as tmp, CampaignStore.open(Path(tmp) / "check.db", campaign.name) as store:
        dnc_problems: list[RowProblem] = []
        if dnc_file is not None:
            dnc_problems = add_campaign_dnc(store, campaign, dnc_file)
        imported = import_campaign_contacts(path, campaign, mapping, store, on_progress=on_progress)
        report = CheckReport(imported, dnc_problems=dnc_problems)
        window = campaign.calling_window
        with store._read() as c:  # noqa: SLF001 - the check is the store's other reader of its own throwaway file
            report.dnc_numbers = [
                (row, phone) for phone, row in c.execute("SELECT phone, source_row FROM contacts WHERE status = 'dnc' ORDER BY source_row")
            ]
            by_zone: dict[str, list[int]] = {}
            for zone, n in c.execute("SELECT timezone, COUNT(*) FROM contacts WHERE status = 'pending' GROUP BY timezone"):
                counts = by_zone.setdefault(contact_zone(zone, window), [0, 0])
                counts[0] += n
                counts[1] += n if zone is None else 0
            report.tags = dict(
                c.execute(
                    "SELECT j.value, COUNT(*) FROM contacts, json_each(contacts.tags) AS j WHERE status = 'pending'"
                    " GROUP BY j.value ORDER BY COUNT(*) DESC, j.value"
                ).fetchall()
            )
        report.zones = sorted(
            (ZoneCount(zone, n, next_window_start(now, zone, window), by_default) for zone, (n, by_default) in by_zone.items()),
            key=lambda z: (-z.contacts, z.zone),
        )
        return report
