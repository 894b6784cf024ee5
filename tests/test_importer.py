"""The streaming import into a store: the same rows reported as ``load_contacts`` reports them, duplicates
merged in the store, extensions kept apart, and a large file parsed in processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebot.campaign import importer
from voicebot.campaign.contacts import load_contacts, parse_number
from voicebot.campaign.importer import import_contacts
from voicebot.campaign.store import CampaignStore
from voicebot.config import ContactField, ContactsImport

DATA = Path(__file__).parent / "data" / "contacts"
NAME_FIELDS = {"first_name": ContactField(), "company": ContactField(required=False, default="your company")}
MAPPING = ContactsImport(columns={"first_name": "First Name"})


@pytest.fixture
def store(tmp_path: Path):
    with CampaignStore.open(tmp_path / "c.db", "t") as s:
        yield s


def _stored(store: CampaignStore) -> dict[str, tuple]:
    with store._read() as c:  # noqa: SLF001 - the test reads back what the import wrote
        rows = c.execute("SELECT phone, fields, tags, priority, source_row, extension, status FROM contacts ORDER BY id").fetchall()
    return {r[0]: (json.loads(r[1]), tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows}


@pytest.mark.parametrize(
    ("name", "mapping", "region", "fields"),
    [
        ("numbers.csv", MAPPING, "US", NAME_FIELDS),
        ("fields.csv", ContactsImport(), "US", {"name": ContactField()}),
        ("bom_semicolon.csv", ContactsImport(columns={"name": "Name"}), "US", {}),
        ("cyrillic_cp1251.csv", ContactsImport(phone="Телефон", columns={"first_name": "ИМЯ"}), "RU", {}),
        ("german_latin1.csv", ContactsImport(), "DE", {}),
    ],
)
def test_the_streaming_import_reports_and_keeps_what_load_contacts_does(store, name, mapping, region, fields) -> None:
    path = DATA / name
    expected = load_contacts(path, mapping, region, fields)
    report = import_contacts(path, mapping, region, fields, store, workers=1)
    assert [str(p) for p in report.problems] == [str(p) for p in expected.problems]
    assert (report.rows, report.contacts, report.duplicates) == (expected.rows, len(expected.contacts), expected.duplicates)
    stored = _stored(store)
    assert list(stored) == [c.phone for c in expected.contacts]  # file order: the dial order among equals
    for contact in expected.contacts:
        assert stored[contact.phone][:4] == (contact.fields, contact.tags, contact.priority, contact.row)


def test_duplicates_across_batches_merge_in_the_store_and_a_rerun_keeps_the_status(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 2)  # every duplicate lands in a later batch than its first row
    path = tmp_path / "dups.csv"
    path.write_text(
        "phone,first_name,tags,priority\n"
        "+1 415 555 0123,,vip,1\n"
        "+1 415 555 0199,Zed,,0\n"
        "+14155550123,Ann,new;vip,5\n"
        "(415) 555 0123,Bea,west,2\n",
        encoding="utf-8",
    )
    fields = {"first_name": ContactField(required=False, default="there")}
    report = import_contacts(path, ContactsImport(), "US", fields, store, workers=1)
    assert (report.rows, report.added, report.duplicates) == (4, 2, 2)
    ann = _stored(store)["+14155550123"]
    assert ann[:4] == ({"first_name": "Ann"}, ("vip", "new", "west"), 5, 2)  # the default gave way to the first name

    store.defer(1, 123.0)
    again = import_contacts(path, ContactsImport(), "US", fields, store, workers=1)
    assert (again.added, again.known) == (0, 2)
    assert store.get_contact(1).next_at == 123.0  # a known number keeps its schedule


def test_a_number_with_an_extension_is_kept_with_it_or_reported_when_extensions_are_off(store, tmp_path) -> None:
    path = tmp_path / "b2b.csv"
    path.write_text("телефон;имя\n8 (926) 765-43-21 доб. 12;Иван\n+7 495 123-45-67 x 345;Пётр\n8 916 123-45-67;Анна\n", encoding="utf-8")
    mapping = ContactsImport(phone="телефон")
    off = import_contacts(path, mapping, "RU", {}, store, workers=1)
    assert [(p.row, p.message) for p in off.problems] == [
        (2, "'8 (926) 765-43-21 доб. 12' has an extension (12), which cannot be dialled"),
        (3, "'+7 495 123-45-67 x 345' has an extension (345), which cannot be dialled"),
    ]
    on = import_contacts(path, mapping, "RU", {}, store, workers=1, extensions=True)
    assert on.problems == []
    stored = _stored(store)
    assert stored["+79267654321"][4] == "12" and stored["+74951234567"][4] == "345" and stored["+79161234567"][4] == ""


def test_an_extension_marker_is_not_taken_for_letters_in_the_number() -> None:
    assert parse_number("+1 415 555 0123 ext. 7", "US", extensions=True).extension == "7"
    with pytest.raises(ValueError, match="contains letters"):
        parse_number("+1 415 555 O123 x 7", "US", extensions=True)


def test_a_large_file_is_parsed_in_processes_in_file_order(store, tmp_path, monkeypatch) -> None:
    from voicebot.bench.contacts import write_synthetic_contacts

    monkeypatch.setattr(importer, "PARALLEL_FROM_ROWS", 100)
    monkeypatch.setattr(importer, "BATCH_ROWS", 300)
    path = write_synthetic_contacts(tmp_path / "big.csv", 3000)
    seen: list[tuple[int, int]] = []
    report = import_contacts(path, ContactsImport(), "US", {}, store, workers=2, on_progress=lambda done, total: seen.append((done, total)))
    assert (report.rows, report.added, report.problems) == (3000, 3000, [])
    assert seen[-1] == (3000, 3000) and len(seen) == 10
    assert list(_stored(store))[:2] == ["+12122000000", "+12122000001"]
