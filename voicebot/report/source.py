"""Read a campaign store for reports, read-only.

Reports open the file with SQLite's read-only mode rather than ``CampaignStore.open``:
that one creates a store when the file is missing or empty and writes its meta, and a
report must never change (or create) the campaign it describes, even while a run is
writing to it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.errors import VoicebotError


class ReportError(VoicebotError):
    code = "report-error"


@dataclass(frozen=True)
class ContactRow:
    id: int
    phone: str
    fields: dict[str, str]
    tags: tuple[str, ...]
    status: str
    attempts: int
    last_outcome: str | None


@dataclass(frozen=True)
class CallRow:
    """One attempt with its contact and, once it ended, its call record."""

    attempt_id: str
    contact_id: int
    seq: int
    phone: str
    tags: tuple[str, ...]
    fields: dict[str, str]
    state: str
    created_at: float
    dialled_at: float | None
    ended_at: float | None
    outcome: str | None
    session_outcome: str | None = None
    sip_code: int | None = None
    reason: str = ""
    setup_ms: int = 0
    talk_ms: int = 0
    hangup_by: str = ""
    handoff: str = ""
    path: tuple[str, ...] = ()
    slots: dict = field(default_factory=dict)
    transcript: tuple[dict, ...] = ()
    recording: str | None = None
    record: dict | None = None

    @property
    def started_at(self) -> float:
        return self.dialled_at if self.dialled_at is not None else self.created_at

    @property
    def ended(self) -> bool:
        return self.state in ("ended", "interrupted")

    @property
    def answered(self) -> bool:
        # The session only exists once the call was answered; the SIP code covers records
        # written before session outcomes were stored.
        return self.session_outcome is not None or self.sip_code == 200

    @property
    def conversation(self) -> bool:
        """Answered by something the script talked to: a machine's greeting is no conversation."""
        return self.answered and self.outcome != "voicemail"

    @property
    def decisions(self) -> list[dict] | None:
        """What the script engine made of each thing the person did; None for records made before
        the engine's decisions were stored."""
        if self.record is None or "decisions" not in self.record:
            return None
        return list(self.record["decisions"])


@dataclass(frozen=True)
class CampaignData:
    db: Path
    campaign: str
    dialplan: str | None  # as the run recorded it: the path it was given
    created_at: float | None
    contacts: tuple[ContactRow, ...]
    calls: tuple[CallRow, ...]  # in start order


_CALLS_SQL = (
    "SELECT a.id, a.contact_id, a.seq, c.phone, c.tags, c.fields, a.state, a.created_at, a.dialled_at, a.ended_at,"
    " a.outcome, r.session_outcome, r.sip_code, r.reason, r.setup_ms, r.talk_ms, r.hangup_by, r.handoff, r.path,"
    " r.slots, r.transcript, r.recording, r.record"
    " FROM attempts a JOIN contacts c ON c.id = a.contact_id LEFT JOIN call_records r ON r.attempt_id = a.id"
    " ORDER BY COALESCE(a.dialled_at, a.created_at), a.contact_id, a.seq"
)


def load_campaign(db: str | Path) -> CampaignData:
    """Everything a report needs from the store at ``db``; ReportError if it is missing or not a store."""
    db = Path(db)
    if not db.is_file():
        raise ReportError(f"{db}: no such campaign store (give the .db file a `voicebot run` wrote)", code="report-no-store")
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"{db}: cannot open the campaign store: {exc}", code="report-bad-store") from exc
    try:
        return _read(conn, db)
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{db} is not a voicebot campaign store (SQLite says: {exc})", code="report-bad-store") from exc
    finally:
        conn.close()


def _read(conn: sqlite3.Connection, db: Path) -> CampaignData:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"meta", "contacts", "attempts", "call_records"} - tables
    if missing:
        raise ReportError(
            f"{db} is not a voicebot campaign store (no table {', '.join(sorted(missing))})", code="report-bad-store"
        )
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    created = meta.get("created_at")
    contacts = tuple(
        ContactRow(r[0], r[1], json.loads(r[2]), tuple(json.loads(r[3])), r[4], r[5], r[6])
        for r in conn.execute("SELECT id, phone, fields, tags, status, attempts, last_outcome FROM contacts ORDER BY id")
    )
    calls = tuple(_call(r) for r in conn.execute(_CALLS_SQL))
    return CampaignData(
        db=db,
        campaign=meta.get("campaign", ""),
        dialplan=meta.get("dialplan") or None,
        created_at=float(created) if created else None,
        contacts=contacts,
        calls=calls,
    )


def _json(text: str | None, empty: object) -> Any:
    if not text:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        return empty  # one damaged record must not cost the whole report


def _call(r: tuple) -> CallRow:
    record = _json(r[22], None)
    return CallRow(
        attempt_id=r[0],
        contact_id=r[1],
        seq=r[2],
        phone=r[3],
        tags=tuple(_json(r[4], [])),
        fields=_json(r[5], {}),
        state=r[6],
        created_at=r[7],
        dialled_at=r[8],
        ended_at=r[9],
        outcome=r[10],
        session_outcome=r[11],
        sip_code=r[12],
        reason=r[13] or "",
        setup_ms=r[14] or 0,
        talk_ms=r[15] or 0,
        hangup_by=r[16] or "",
        handoff=r[17] or "",
        path=tuple(_json(r[18], [])),
        slots=_json(r[19], {}),
        transcript=tuple(_json(r[20], [])),
        recording=r[21],
        record=record if isinstance(record, dict) else None,
    )
