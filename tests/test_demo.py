"""`make demo`'s campaign, smaller: one contact per persona through the simulated PBX and the real bot."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_one_customer_of_every_persona_gets_the_outcome_of_their_persona(tmp_path: Path, capsys) -> None:
    from voicebot.peers import demo

    with (ROOT / "dialplans" / "demo_contacts.csv").open() as f:
        rows = list(csv.DictReader(f))
    one_each = {}
    for row in rows:
        one_each.setdefault(row["persona"], row)
    contacts = tmp_path / "contacts.csv"
    with contacts.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(one_each.values())
    dialplan = tmp_path / "demo_en.yaml"
    # the demo's trunk and operator ports, moved so a running `make demo` does not collide
    dialplan.write_text(
        (ROOT / "dialplans" / "demo_en.yaml")
        .read_text()
        .replace("127.0.0.1:5080", "127.0.0.1:5180")
        .replace("127.0.0.1:5090", "127.0.0.1:5190")
    )

    with capsys.disabled():
        assert demo.main([str(dialplan), str(contacts), "--out", str(tmp_path / "run"), "--concurrency", "6"]) == 0

    with sqlite3.connect(tmp_path / "run" / "campaign.db") as db:
        got = dict(
            db.execute("SELECT json_extract(c.fields, '$.persona'), a.outcome FROM attempts a JOIN contacts c ON c.id = a.contact_id")
        )
    assert set(got) == set(demo.PERSONAS)
    no_speech = {"busy", "no_answer", "invalid", "voicemail", "hangs_up"}
    for persona in no_speech:  # the PBX and the dialer alone decide these
        assert got[persona] == demo.PERSONAS[persona].expect, (persona, got)
    understood = [p for p in set(demo.PERSONAS) - no_speech if got[p] == demo.PERSONAS[p].expect]
    assert len(understood) >= 5, got  # PocketSphinx over a phone line is good, not perfect (all 7 in the runs seen)
