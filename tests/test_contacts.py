"""Contacts and DNC import: messy CSV/XLSX lists become contacts, merged duplicates or reported rows."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pytest

from voicebot.campaign.contacts import (
    ContactsError,
    ImportResult,
    RowProblem,
    load_contacts,
    load_dnc,
    normalise_number,
    number_timezone,
)
from voicebot.config import ContactField, ContactsImport
from voicebot.errors import ConfigError

DATA = Path(__file__).parent / "data" / "contacts"
NUMBERS = str(DATA / "numbers.csv")
FIELDS = str(DATA / "fields.csv")
NAME_FIELDS = {"first_name": ContactField(), "company": ContactField(required=False, default="your company")}


def accounted(result: ImportResult) -> bool:
    """Every data row is a contact, a merged duplicate or a reported problem."""
    return result.rows == len(result.contacts) + result.duplicates + len({p.row for p in result.problems})


def by_phone(result: ImportResult) -> dict:
    return {c.phone: c for c in result.contacts}


def write_csv(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def numbers() -> ImportResult:
    return load_contacts(NUMBERS, ContactsImport(columns={"first_name": "First Name"}), "US", NAME_FIELDS)


# --- numbers ----------------------------------------------------------------------------------


def test_bad_numbers_are_reported_with_row_column_and_value(numbers: ImportResult) -> None:
    got = [(p.row, p.column, p.value) for p in numbers.problems]
    assert got == [
        (3, "Phone", "12345"),  # too short
        (4, "Phone", "call me"),  # letters, no digits at all
        (7, "Phone", "02071234567"),  # a London number in a US list
        (9, "Phone", "+1 415 555 0124 ext 12"),  # an extension cannot be dialled
        (10, "Phone", "4155550125a"),  # phonenumbers alone would drop the trailing letter
    ]
    assert str(numbers.problems[0]) == f"{NUMBERS}:3: Phone: '12345' is not a valid number for region US (too short)"
    assert "+14155550124" not in by_phone(numbers)
    assert "+14155550125" not in by_phone(numbers)


def test_duplicates_written_differently_merge_into_the_first_row(numbers: ImportResult) -> None:
    assert numbers.rows == 9  # the blank line 6 is not a row
    assert numbers.duplicates == 2  # "+1 415 555 0123" (row 5) and "4155550123" (row 8) are "(415) 555-0123"
    assert [c.phone for c in numbers.contacts] == ["+14155550123", "+14155550126"]
    ann = numbers.contacts[0]
    assert ann.row == 2 and ann.source == NUMBERS
    assert ann.fields == {"first_name": "Ann", "company": "Acme", "notes": "second entry"}  # first wins, blanks filled in order
    assert accounted(numbers)


def test_defaults_fill_empty_optional_fields_and_extra_columns_are_kept(numbers: ImportResult) -> None:
    gil = by_phone(numbers)["+14155550126"]
    assert gil.fields == {"first_name": "Gil", "company": "your company", "notes": ""}
    assert gil.row == 11


def test_merge_unions_tags_keeps_first_zone_and_takes_highest_priority(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "phone,tags,priority,timezone,city\n"
        "+1 415 555 0123,vip,1,,\n"
        "+14155550123,new;vip,5,America/Denver,SF\n"
        "(415) 555 0123,west,2,America/Chicago,LA\n",
    )
    result = load_contacts(path, ContactsImport(), "US")
    (contact,) = result.contacts
    assert contact.tags == ("vip", "new", "west")
    assert contact.priority == 5
    assert contact.timezone == "America/Denver"  # the first row had no zone: the first later one fills it
    assert contact.fields == {"city": "SF"}
    assert (result.rows, result.duplicates, contact.row) == (3, 2, 2)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(415) 555-0123", "US", "+14155550123"),
        ("+1 415 555 0123", "GB", "+14155550123"),
        ("8 (495) 123-45-67", "ru", "+74951234567"),
        ("4917012345678", "DE", "+4917012345678"),  # Excel dropped the "+": not +49 4917012345678
        ("030 1234567", "DE", "+49301234567"),
        ("00442079460958", "DE", "+442079460958"),
    ],
)
def test_normalise_number(raw: str, region: str, e164: str) -> None:
    assert normalise_number(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("", "US", "no number"),
        ("12345", "US", "'12345' is not a valid number for region US (too short)"),
        ("5550123", "US", "(a local number without its area code)"),
        ("4917012345678", "US", "(too long; did you mean +4917012345678?)"),
        ("4.91701E+12", "US", "scientific notation"),
        ("1-800-FLOWERS", "US", "contains letters"),
        ("+1 415 555 0123 x5", "US", "has an extension (5)"),
        ("4155550123", "XX", "unknown region 'XX'"),
    ],
)
def test_normalise_number_explains_what_is_wrong(raw: str, region: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        normalise_number(raw, region)
    assert message in str(info.value)


def test_number_timezone() -> None:
    assert number_timezone("+74951234567") == "Europe/Moscow"
    assert number_timezone("+442079460958") == "Europe/London"
    assert number_timezone("+79161234567") is None  # a Russian mobile spans eleven zones
    assert number_timezone("+18005550123") is None  # toll-free: the whole NANP


# --- fields, tags, priority, time zones ----------------------------------------------------------------


@pytest.fixture
def fields() -> ImportResult:
    return load_contacts(FIELDS, ContactsImport(), "US", {"name": ContactField()})


def test_tags_are_split_stripped_and_deduplicated(fields: ImportResult) -> None:
    assert by_phone(fields)["+14155550123"].tags == ("vip", "new", "west")
    assert by_phone(fields)["+74951234567"].tags == ()


def test_priority_accepts_whole_numbers_and_reports_the_rest(fields: ImportResult) -> None:
    contacts = by_phone(fields)
    assert contacts["+14155550123"].priority == 3
    assert contacts["+74951234567"].priority == 3  # "3.0"
    assert contacts["+12025550199"].priority == -1
    assert contacts["+442079460958"].priority == 0  # empty
    bad = {(p.row, p.column, p.value) for p in fields.problems if p.column == "priority"}
    assert bad == {(7, "priority", "high"), (8, "priority", "2.5")}


def test_timezone_from_the_number_or_the_column(fields: ImportResult) -> None:
    contacts = by_phone(fields)
    assert contacts["+74951234567"].timezone == "Europe/Moscow"
    assert contacts["+442079460958"].timezone == "Europe/London"  # the cell holds only a space
    assert contacts["+12025550199"].timezone == "America/Chicago"  # written america/chicago
    assert contacts["+79161234567"].timezone is None
    (bad,) = [p for p in fields.problems if p.column == "timezone"]
    assert (bad.row, bad.value) == (9, "Mars/Olympus")
    assert "+12125550102" not in contacts


def test_required_field_empty_is_a_row_problem(fields: ImportResult) -> None:
    (bad,) = [p for p in fields.problems if p.column == "name"]
    assert (bad.row, bad.value) == (10, "")
    assert "+12125550103" not in by_phone(fields)
    assert fields.rows == 9 and fields.duplicates == 0 and accounted(fields)


def test_extra_columns_become_identifier_fields(fields: ImportResult) -> None:
    ann = by_phone(fields)["+14155550123"]
    assert ann.fields == {"name": "Ann", "lead_source": "web", "_2nd_phone": ""}


def test_clashing_and_unnamed_extra_columns_keep_their_data(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "phone,Notes,notes ,город\n+14155550123,a,b,c,d\n")
    (contact,) = load_contacts(path, ContactsImport(), "US").contacts
    assert contact.fields == {"notes": "a", "notes_2": "b", "column_4": "c", "column_5": "d"}


def test_missing_column_of_a_required_field_is_a_file_error() -> None:
    with pytest.raises(ContactsError) as info:
        load_contacts(FIELDS, ContactsImport(columns={"first_name": "First Name"}), "US", {"first_name": ContactField()})
    message = str(info.value)
    assert FIELDS in message and "'First Name'" in message and "the columns are: phone, name, tags" in message
    assert isinstance(info.value, ConfigError) and info.value.code == "contacts-invalid"


def test_missing_column_is_fine_when_the_field_has_a_default_or_is_optional() -> None:
    specs = {"first_name": ContactField(default="there"), "company": ContactField(required=False)}
    result = load_contacts(FIELDS, ContactsImport(), "US", specs)
    assert by_phone(result)["+14155550123"].fields["first_name"] == "there"
    assert by_phone(result)["+14155550123"].fields["company"] == ""


def test_missing_phone_column_names_the_file_and_the_closest_header() -> None:
    path = str(DATA / "no_phone_column.csv")
    with pytest.raises(ContactsError) as info:
        load_contacts(path, ContactsImport(), "US")
    assert str(info.value) == (
        f"{path}: missing column 'phone' (did you mean 'Phone Number'?); the columns are: Phone Number, Name"
        " (map columns in the dialplan's campaign.contacts, or with voicebot run --column FIELD=HEADER)"
    )


@pytest.mark.parametrize("header", ["Phnoe", "Customer mobile phone number"])
def test_a_misspelt_or_longer_header_is_suggested(tmp_path: Path, header: str) -> None:
    path = write_csv(tmp_path, f"{header},Name\n+14155550123,Ann\n")
    with pytest.raises(ContactsError, match=rf"missing column 'phone' \(did you mean '{header}'\?\)"):
        load_contacts(path, ContactsImport(), "US")


def test_a_file_without_a_header_row_is_called_out(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "+14155550123,Ann\n+14155550124,Bob\n")
    with pytest.raises(ContactsError, match="the first row looks like data"):
        load_contacts(path, ContactsImport(), "US")


def test_region_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "phone,country\n020 7946 0958,gb\n(415) 555-0123,\n020 7946 0958,XX\n")
    result = load_contacts(path, ContactsImport(region="country"), "US")
    assert [c.phone for c in result.contacts] == ["+442079460958", "+14155550123"]
    (bad,) = result.problems
    assert (bad.row, bad.column, bad.value) == (4, "country", "XX")


# --- encodings and delimiters ---------------------------------------------------------------------------


def test_excel_bom_and_semicolons() -> None:
    result = load_contacts(DATA / "bom_semicolon.csv", ContactsImport(columns={"name": "Name"}), "US")
    assert [(c.phone, c.fields["name"], c.tags) for c in result.contacts] == [
        ("+14155550123", "José", ("vip", "new")),  # the comma inside the cell is not the delimiter
        ("+14155550124", "Zoë", ()),
    ]
    assert result.problems == []


def test_cp1251_cyrillic() -> None:
    mapping = ContactsImport(phone="Телефон", columns={"first_name": "ИМЯ"})
    result = load_contacts(DATA / "cyrillic_cp1251.csv", mapping, "RU")
    assert [(c.phone, c.fields["first_name"]) for c in result.contacts] == [
        ("+74951234567", "Иван"),
        ("+79161234567", "Пётр"),  # 8 916 ...: the Russian trunk prefix
    ]
    assert result.contacts[0].fields["column_3"] == "Москва"


def test_western_single_byte_file_is_not_read_as_cyrillic() -> None:
    result = load_contacts(DATA / "german_latin1.csv", ContactsImport(), "DE")
    assert [c.fields["name"] for c in result.contacts] == ["Müller", "Jörg Weiß"]
    assert [c.phone for c in result.contacts] == ["+49301234567", "+491701234567"]


# --- XLSX ------------------------------------------------------------------------------------------------


def make_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def as_float_in_file(path: Path, digits: str) -> None:
    """Rewrite a number cell as some producers store it (4.917012345678E12), so it reads back as a float."""
    with zipfile.ZipFile(path) as src:
        parts = {name: src.read(name) for name in src.namelist()}
    for name, data in parts.items():
        if name.startswith("xl/worksheets/"):
            parts[name] = data.replace(f"<v>{digits}</v>".encode(), f"<v>{digits[0]}.{digits[1:]}E{len(digits) - 1}</v>".encode())
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in parts.items():
            dst.writestr(name, data)


def test_xlsx_numeric_phone_cells_on_a_named_sheet(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        {
            "Readme": [["This sheet is not the list"]],
            "Leads": [
                ["Phone", "Name", "Country", "Priority"],
                [4155550123, "Ann", "US", 2],
                [4917012345678, "Jens", None, 1.0],
                ["+44 20 7946 0958", "Cat", None, None],
                [None, None, None, None],
                [12345, "Bad", None, None],
            ],
        },
    )
    as_float_in_file(path, "4917012345678")
    book = openpyxl.load_workbook(path, read_only=True)
    assert isinstance(book["Leads"]["A3"].value, float)  # the case under test really is a float cell
    book.close()

    result = load_contacts(path, ContactsImport(sheet="leads", region="Country", columns={"name": "Name"}), "DE")
    assert [(c.phone, c.fields["name"], c.priority, c.row) for c in result.contacts] == [
        ("+14155550123", "Ann", 2, 2),
        ("+4917012345678", "Jens", 1, 3),
        ("+442079460958", "Cat", 0, 4),
    ]
    (bad,) = result.problems
    assert (bad.row, bad.column, bad.value) == (6, "Phone", "12345")
    assert result.rows == 4 and accounted(result)


def test_xlsx_missing_sheet_names_the_sheets(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "leads.xlsx", {"Leads": [["phone"]], "Old": [["phone"]]})
    with pytest.raises(ContactsError, match=r"no sheet 'Contacts'; the sheets are: Leads, Old"):
        load_contacts(path, ContactsImport(sheet="Contacts"), "US")


def test_unsupported_or_missing_files_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match=r"list\.ods: unsupported file type '\.ods': use \.csv, \.txt, \.xlsx, \.xlsm"):
        load_contacts(tmp_path / "list.ods", ContactsImport(), "US")
    with pytest.raises(ContactsError, match="no such file"):
        load_contacts(tmp_path / "gone.csv", ContactsImport(), "US")
    (tmp_path / "broken.xlsx").write_text("not a zip")
    with pytest.raises(ContactsError, match="cannot read as a spreadsheet"):
        load_contacts(tmp_path / "broken.xlsx", ContactsImport(), "US")


def test_a_header_column_that_appears_twice_is_a_file_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "phone,name,Phone\n+14155550123,Ann,+14155550124\n")
    with pytest.raises(ContactsError, match=r"column 'phone' appears 2 times in the header \(columns 1 and 3\)"):
        load_contacts(path, ContactsImport(), "US")


# --- do-not-call ------------------------------------------------------------------------------------------


def test_dnc_csv_with_a_phone_column() -> None:
    path = str(DATA / "dnc.csv")
    numbers, problems = load_dnc(path, "US")
    assert numbers == {"+14155550123", "+442079460958"}
    assert problems == [RowProblem(path, 4, "Phone", "not known", "'not known' is not a phone number")]


def test_dnc_plain_lines_skip_blanks_and_comments() -> None:
    path = str(DATA / "dnc.txt")
    numbers, problems = load_dnc(path, "US")
    assert numbers == {"+14155550123", "+12025550199", "+74951234567"}
    assert [(p.row, p.column, p.value) for p in problems] == [(6, None, "123")]
    assert str(problems[0]) == f"{path}:6: '123' is not a valid number for region US (too short)"


def test_dnc_single_column_csv_and_xlsx(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "Phone\n4155550123\n")
    assert load_dnc(csv_path, "US") == ({"+14155550123"}, [])
    xlsx_path = make_xlsx(tmp_path / "dnc.xlsx", {"DNC": [["Number", "Why"], [4155550123, "asked"]]})
    assert load_dnc(xlsx_path, "US", phone_column="number") == ({"+14155550123"}, [])
    with pytest.raises(ContactsError, match=r"missing column 'phone'"):
        load_dnc(xlsx_path, "US")


def test_command_line_columns_override_the_dialplans_mapping() -> None:
    from voicebot.campaign.runner import contacts_mapping
    from voicebot.config import ContactsImport

    base = ContactsImport(phone="phone", columns={"first_name": "First name", "company": "Company"})
    mapped = contacts_mapping(base, {"phone": "Telefon", "company": "Firma", "tags": "Labels"})
    assert (mapped.phone, mapped.tags) == ("Telefon", "Labels")
    assert mapped.columns == {"first_name": "First name", "company": "Firma"}
    assert base.phone == "phone"  # the dialplan's own mapping is left as it was
