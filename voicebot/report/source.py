"""Read a campaign store for reports, read-only, through ``CampaignStore.open_readonly``.

A report must never change (or create) the campaign it describes, even while a run is
writing to it: the store's read-only mode refuses every write, and its ``call_rows`` is
the one join of attempts, contacts and call records that the export uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voicebot.campaign.store import CallRow, CampaignStore, ContactRow, StoreError
from voicebot.errors import VoicebotError

__all__ = ["CallRow", "CampaignData", "ContactRow", "ReportError", "load_campaign"]


class ReportError(VoicebotError):
    code = "report-error"


@dataclass(frozen=True)
class CampaignData:
    db: Path
    campaign: str
    dialplan: str | None  # as the run recorded it: the path it was given
    created_at: float | None
    contacts: tuple[ContactRow, ...]
    calls: tuple[CallRow, ...]  # in start order


def load_campaign(db: str | Path) -> CampaignData:
    """Everything a report needs from the store at ``db``; ReportError if it is missing or not a store."""
    db = Path(db)
    if not db.is_file():
        raise ReportError(f"{db}: no such campaign store (give the .db file a `voicebot run` wrote)", code="report-no-store")
    try:
        with CampaignStore.open_readonly(db) as store:
            meta = store.meta()
            contacts = tuple(store.contact_rows())
            calls = sorted(store.call_rows(), key=lambda c: (c.started_at, c.contact_id, c.seq))
    except StoreError as exc:
        raise ReportError(str(exc), code="report-bad-store") from exc
    created = meta.get("created_at")
    return CampaignData(
        db=db,
        campaign=meta.get("campaign", ""),
        dialplan=meta.get("dialplan") or None,
        created_at=float(created) if created else None,
        contacts=contacts,
        calls=tuple(calls),
    )
