"""Contacts import for campaigns: CSV or XLSX lists of numbers, and do-not-call lists.

A row either becomes a contact, is merged into an earlier contact with the same
number (counted), or is reported as a ``RowProblem``; nothing is dropped silently.
Only a file that cannot be read as a whole (unknown format, missing columns)
raises ``ContactsError``.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import math
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import openpyxl
import phonenumbers
from openpyxl.utils.exceptions import InvalidFileException
from phonenumbers import timezone as phone_timezone

from voicebot.config import ContactField, ContactsImport
from voicebot.errors import ConfigError

CSV_SUFFIXES = (".csv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
_DELIMITERS = ",;\t"
_SNIFF_LINES = 20
# A word mixing Latin and Cyrillic letters is what a Western (latin-1/cp1252) file looks like read as cp1251.
_MIXED_SCRIPT = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")
_SCIENTIFIC = re.compile(r"^\d+(?:[.,]\d+)?[eE]\+?\d+$")
_POSSIBLE_REASON = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


class ContactsError(ConfigError):
    """A contacts or DNC file cannot be imported as a whole."""

    code = "contacts-invalid"


@dataclass(frozen=True)
class Contact:
    phone: str  # E.164
    fields: dict[str, str]  # mapped fields with defaults applied, plus every extra column
    tags: tuple[str, ...] = ()
    priority: int = 0  # higher is dialled first
    timezone: str | None = None  # IANA zone; None when the number alone does not tell
    extension: str = ""  # dialled as DTMF after the answer
    row: int = 0  # 1-based row of the first row that gave this contact (the header is row 1)
    source: str = ""


@dataclass(frozen=True)
class RowProblem:
    path: str
    row: int
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        column = f"{self.column}: " if self.column is not None else ""
        return f"{self.path}:{self.row}: {column}{self.message}"


@dataclass
class ImportResult:
    contacts: list[Contact]
    problems: list[RowProblem]
    rows: int  # data rows read, without the header and fully blank rows
    duplicates: int  # rows merged into an earlier contact with the same number


# --- numbers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedNumber:
    e164: str
    extension: str = ""  # digits to send as DTMF after the answer ("" for none)
    zone: str | None = None  # as ``number_timezone`` gives it


def normalise_number(raw: str, region: str) -> str:
    """E.164 via ``phonenumbers``; raises ValueError with a human message (not possible / not valid / empty)."""
    return parse_number(raw, region).e164


def parse_number(raw: str, region: str, extensions: bool = False) -> ParsedNumber:
    """``normalise_number`` with the number's zone, parsed once (the import's slowest step, ~100 µs a row);
    with ``extensions``, a number written with one ("... доб. 12", "x12", ";ext=12") keeps it apart
    instead of being refused."""
    raw = raw.strip()
    region = region.upper()
    if not raw:
        raise ValueError("no number")
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region '{region}' (use an ISO country code such as US, GB or RU)")
    if _SCIENTIFIC.match(raw):
        raise ValueError(f"'{raw}' is in scientific notation, so digits are lost: format the column as text in the spreadsheet")
    try:
        number = phonenumbers.parse(raw, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        raise ValueError(f"'{raw}' is not a phone number") from None
    main = raw
    if number.extension:
        if not extensions:
            raise ValueError(f"'{raw}' has an extension ({number.extension}), which cannot be dialled")
        # the extension's marker ("доб.", "ext", "x") is letters that belong to it, not to the number
        main = re.sub(r"\D*" + re.escape(number.extension) + r"\D*$", "", raw)
    # phonenumbers reads letters as keypad digits or ignores trailing ones: either way a guess.
    if any(ch.isalpha() for ch in main):
        raise ValueError(f"'{raw}' contains letters")
    national = number.country_code_source == phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY
    where = f" for region {region}" if national else ""
    international = _with_plus(main) if national else None
    # number_type finds the number's region and type once; it is UNKNOWN exactly when is_valid_number is
    # False (both run the same match against the region's metadata), and the zone needs the type too
    kind = phonenumbers.number_type(number)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        reason = phonenumbers.is_possible_number_with_reason(number)
        details = [d for d in (_POSSIBLE_REASON.get(reason), international and f"did you mean {international}?") if d]
        raise ValueError(f"'{raw}' is not a valid number{where}" + (f" ({'; '.join(details)})" if details else ""))
    # A bare digit string starting with the region's own country code is most likely an
    # international number that lost its "+" (Excel does that to numeric cells); lenient
    # national plans (e.g. Germany) would otherwise accept it as a longer, wrong national number.
    if international and main.startswith(str(phonenumbers.country_code_for_region(region))):
        return ParsedNumber(international, number.extension or "", number_timezone(international))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if number.country_code is not None and phonenumbers.is_number_type_geographical(kind, number.country_code):
        zones = phone_timezone.time_zones_for_geographical_number(number)
    else:
        zones = phone_timezone.time_zones_for_number(number)  # country-level zones
    return ParsedNumber(e164, number.extension or "", _one_zone(zones))


def _with_plus(raw: str) -> str | None:
    """The E.164 form of ``raw`` read as an international number without its "+", if valid."""
    if not raw.isdigit():
        return None
    try:
        number = phonenumbers.parse("+" + raw)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if phonenumbers.is_valid_number(number) else None


def number_timezone(e164: str) -> str | None:
    """The IANA zone of a number when it maps to exactly one zone; None when it maps to several
    (e.g. a Russian mobile) or none, and the caller falls back to the window's default zone."""
    try:
        return _single_zone(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None


def _single_zone(number: phonenumbers.PhoneNumber) -> str | None:
    return _one_zone(phone_timezone.time_zones_for_number(number))


def _one_zone(zones: tuple[str, ...]) -> str | None:
    if len(zones) == 1 and zones[0] != phone_timezone.UNKNOWN_TIMEZONE:
        return zones[0]
    return None


# --- reading files ---------------------------------------------------------------------------

Rows = list[tuple[int, list[str]]]  # (1-based row number in the file, cells as text), blank rows left out


def _check_file(path: Path) -> None:
    if path.suffix.lower() not in CSV_SUFFIXES + XLSX_SUFFIXES:
        raise ContactsError(f"{path}: unsupported file type '{path.suffix}': use {', '.join(CSV_SUFFIXES + XLSX_SUFFIXES)}")
    if not path.is_file():
        raise ContactsError(f"{path}: no such file")


def _read_rows(path: Path, sheet: str | None) -> Rows:
    _check_file(path)
    if path.suffix.lower() in XLSX_SUFFIXES:
        return _xlsx_rows(path, sheet)
    return _csv_rows(_decode(path.read_bytes()))


def _decode(data: bytes) -> str:
    return data.decode(_encoding(data))


def _encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM), else cp1251 unless the text looks Western, else cp1252 or latin-1."""
    try:
        data.decode("utf-8-sig")
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1251", errors="replace")
    if "\ufffd" not in text and not _MIXED_SCRIPT.search(text):
        return "cp1251"
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _sniff_delimiter(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines[:_SNIFF_LINES]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_rows(text: str) -> Rows:
    delimiter = _sniff_delimiter(text.splitlines()[:_SNIFF_LINES])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [(n, [cell.strip() for cell in cells]) for n, cells in enumerate(reader, start=1)]
    return [(n, cells) for n, cells in rows if any(cells)]


def _xlsx_rows(path: Path, sheet: str | None) -> Rows:
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ContactsError(f"{path}: cannot read as a spreadsheet: {exc}") from exc
    try:
        if sheet is None:
            ws = book.worksheets[0]
        else:
            names = {name.strip().lower(): name for name in book.sheetnames}
            if sheet.strip().lower() not in names:
                raise ContactsError(f"{path}: no sheet '{sheet}'; the sheets are: {', '.join(book.sheetnames)}")
            ws = book[names[sheet.strip().lower()]]
        rows = [(n, [_cell_text(v) for v in values]) for n, values in enumerate(ws.iter_rows(values_only=True), start=1)]
    finally:
        book.close()  # read-only workbooks keep the file open until closed
    return [(n, cells) for n, cells in rows if any(cells)]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number typed into a cell: 4917012345678.0 -> "4917012345678"
    if isinstance(value, datetime) and value.time() == time(0, 0):
        return value.date().isoformat()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value).strip()


class _Header:
    """Column lookup by name, case-insensitive and ignoring surrounding spaces."""

    def __init__(self, path: str, cells: list[str]) -> None:
        self.path = path
        self.cells = cells
        self.missing: list[str] = []

    def find(self, name: str) -> int | None:
        key = name.strip().lower()
        hits = [i for i, cell in enumerate(self.cells) if cell.strip().lower() == key]
        if len(hits) > 1:
            where = " and ".join(str(i + 1) for i in hits)
            raise ContactsError(f"{self.path}: column '{name}' appears {len(hits)} times in the header (columns {where})")
        return hits[0] if hits else None

    def need(self, name: str) -> int:
        """The column's index; a missing one is noted for ``check`` (so one error names them all)."""
        index = self.find(name)
        if index is None:
            self.missing.append(name)
        return -1 if index is None else index

    def check(self) -> None:
        if not self.missing:
            return
        named = [c for c in self.cells if c]
        wanted = ", ".join(f"'{name}'{self._suggest(name)}" for name in self.missing)
        message = f"{self.path}: missing column {wanted}; the columns are: {', '.join(named) or '(none)'}"
        if any(_looks_like_number(cell) for cell in named):
            message += " (the first row looks like data: the file needs a header row)"
        else:
            message += " (map columns in the dialplan's campaign.contacts, or with voicebot run --column FIELD=HEADER)"
        raise ContactsError(message)

    def _suggest(self, name: str) -> str:
        lowered = {c.strip().lower(): c for c in self.cells if c.strip()}
        key = name.strip().lower()
        close = [c for low, c in lowered.items() if key in low or low in key]
        close = close or [lowered[m] for m in difflib.get_close_matches(key, lowered, n=1, cutoff=0.5)]
        return f" (did you mean '{close[0]}'?)" if close else ""


def _looks_like_number(cell: str) -> bool:
    return sum(ch.isdigit() for ch in cell) >= 7


def _identifier(header: str, index: int) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", header.strip().lower())
    if not name.strip("_"):  # no header, or one in another script ("город" would become "_____")
        return f"column_{index + 1}"
    return "_" + name if name[0].isdigit() else name


# --- contacts ----------------------------------------------------------------------------------


@dataclass
class _Draft:
    """A contact while the file is read: duplicates still merge into it."""

    phone: str
    row: int
    values: dict[str, str]  # raw cells, defaults not yet applied, so a later row can fill an empty one
    tags: list[str]
    priority: int
    timezone: str | None  # from the timezone column only
    number_zone: str | None = None  # from the number, when the column gives none
    extension: str = ""

    def merge(self, other: _Draft) -> None:
        for name, value in other.values.items():
            if not self.values.get(name):
                self.values[name] = value
        self.tags.extend(t for t in other.tags if t not in self.tags)
        self.priority = max(self.priority, other.priority)
        self.timezone = self.timezone or other.timezone
        self.extension = self.extension or other.extension


def load_contacts(
    path: str | Path,
    mapping: ContactsImport,
    default_region: str,
    fields: Mapping[str, ContactField] | None = None,
    extensions: bool = False,
) -> ImportResult:
    """Every contact of the file in memory (a demo's list; ``importer.import_contacts`` streams into a store).
    With ``extensions``, a number written with an extension is kept (the extension dialled after the answer)."""
    source = str(path)
    _check_region(source, default_region)
    rows = _read_rows(Path(path), mapping.sheet)
    if not rows:
        raise ContactsError(f"{source}: the file is empty: it needs a header row and a column '{mapping.phone}'")
    width = max(len(cells) for _, cells in rows)  # cells past the header's end are kept too
    specs = dict(fields or {})
    for name in mapping.columns:  # a column named in the mapping but not declared is an optional field
        specs.setdefault(name, ContactField(required=False))
    layout = _layout(_Header(source, rows[0][1] + [""] * (width - len(rows[0][1]))), mapping, specs)

    problems: list[RowProblem] = []
    drafts: dict[str, _Draft] = {}
    duplicates = 0
    for row, cells in rows[1:]:
        draft, row_problems = _read_row(source, row, cells + [""] * (width - len(cells)), layout, specs, default_region, extensions)
        problems.extend(row_problems)
        if draft is None:
            continue
        if draft.phone in drafts:
            drafts[draft.phone].merge(draft)
            duplicates += 1
        else:
            drafts[draft.phone] = draft

    contacts = [_contact(d, specs, source) for d in drafts.values()]
    return ImportResult(contacts, problems, rows=len(rows) - 1, duplicates=duplicates)


@dataclass(frozen=True)
class _Layout:
    """Which column holds what; None where the file has no such column."""

    header: list[str]
    phone: int
    region: int | None
    tags: int | None
    priority: int | None
    timezone: int | None
    fields: dict[str, int | None]
    extras: dict[str, int]  # identifier -> column, for the columns nothing else reads


def _layout(header: _Header, mapping: ContactsImport, specs: Mapping[str, ContactField]) -> _Layout:
    phone = header.need(mapping.phone)
    region = header.need(mapping.region) if mapping.region else None
    fields: dict[str, int | None] = {}
    for name, spec in specs.items():
        column = mapping.columns.get(name, name)
        fields[name] = header.need(column) if spec.required and spec.default is None else header.find(column)
    header.check()
    tags = header.find(mapping.tags) if mapping.tags else None
    priority = header.find(mapping.priority) if mapping.priority else None
    timezone = header.find(mapping.timezone) if mapping.timezone else None

    used = {phone, region, tags, priority, timezone, *fields.values()}
    extras: dict[str, int] = {}
    for index, cell in enumerate(header.cells):
        if index in used:
            continue
        name = base = _identifier(cell, index)
        n = 1
        while name in specs or name in extras:  # two headers normalising alike must not overwrite each other
            n += 1
            name = f"{base}_{n}"
        extras[name] = index
    return _Layout(header.cells, phone, region, tags, priority, timezone, fields, extras)


def _read_row(
    source: str,
    row: int,
    cells: list[str],
    layout: _Layout,
    specs: Mapping[str, ContactField],
    default_region: str,
    extensions: bool = False,
) -> tuple[_Draft | None, list[RowProblem]]:
    """The row as a draft contact, or None and every problem found in it (so one pass fixes them all)."""
    problems: list[RowProblem] = []

    def problem(index: int, message: str) -> None:
        problems.append(RowProblem(source, row, layout.header[index], cells[index], message))

    region = default_region.upper()
    if layout.region is not None and cells[layout.region]:
        region = cells[layout.region].upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            problem(layout.region, f"unknown region '{cells[layout.region]}' (use an ISO country code such as US, GB or RU)")
    number = None
    if not problems:
        try:
            number = parse_number(cells[layout.phone], region, extensions)
        except ValueError as exc:
            problem(layout.phone, str(exc))
    for name, index in layout.fields.items():
        spec = specs[name]
        if index is not None and not cells[index] and spec.required and spec.default is None:
            problem(index, f"{name} is required and empty")
    priority = 0
    if layout.priority is not None:
        try:
            priority = _parse_priority(cells[layout.priority])
        except ValueError as exc:
            problem(layout.priority, str(exc))
    zone = None
    if layout.timezone is not None and cells[layout.timezone]:
        try:
            zone = _canonical_zone(cells[layout.timezone])
        except ValueError as exc:
            problem(layout.timezone, str(exc))
    if problems or number is None:
        return None, problems

    values = {name: (cells[i] if i is not None else "") for name, i in layout.fields.items()}
    values.update((name, cells[i]) for name, i in layout.extras.items())
    tags = _split_tags(cells[layout.tags]) if layout.tags is not None else []
    return _Draft(number.e164, row, values, tags, priority, zone, number.zone, number.extension), []


def _contact(draft: _Draft, specs: Mapping[str, ContactField], source: str) -> Contact:
    values = {name: value or (specs[name].default if name in specs else None) or "" for name, value in draft.values.items()}
    return Contact(
        phone=draft.phone,
        fields=values,
        tags=tuple(draft.tags),
        priority=draft.priority,
        timezone=draft.timezone or draft.number_zone,
        extension=draft.extension,
        row=draft.row,
        source=source,
    )


def _check_region(source: str, region: str) -> None:
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ContactsError(f"{source}: unknown default region '{region}' (use an ISO country code such as US, GB or RU)")


def _split_tags(cell: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in re.split(r"[,;]", cell) if t.strip()))


def _parse_priority(cell: str) -> int:
    if not cell:
        return 0
    try:
        number = float(cell)  # "3", "3.0" and a spreadsheet's 3.0 alike
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ValueError(f"priority '{cell}' is not a whole number")
    return int(number)


@functools.cache
def _zones() -> dict[str, str]:
    return {zone.lower(): zone for zone in available_timezones()}


def _canonical_zone(name: str) -> str:
    zone = _zones().get(name.strip().lower())
    if zone is None:
        raise ValueError(f"unknown time zone '{name}' (use an IANA name such as Europe/Berlin)")
    return zone


# --- do-not-call ----------------------------------------------------------------------------------


def load_dnc(path: str | Path, default_region: str, phone_column: str = "phone") -> tuple[set[str], list[RowProblem]]:
    """Do-not-call numbers: a CSV/XLSX with a header containing the phone column, or a plain text
    file with one number per line (blank lines and lines starting with # ignored)."""
    source = str(path)
    path = Path(path)
    _check_region(source, default_region)
    if path.suffix.lower() in XLSX_SUFFIXES:
        return _dnc_table(source, _read_rows(path, None), default_region, phone_column)
    _check_file(path)
    # Comment lines become blank (not removed) so row numbers stay line numbers.
    lines = ["" if line.lstrip().startswith("#") else line for line in _decode(path.read_bytes()).splitlines()]
    first = next((line.strip() for line in lines if line.strip()), "")
    if any(d in first for d in _DELIMITERS) or first.lower() == phone_column.strip().lower():
        return _dnc_table(source, _csv_rows("\n".join(lines)), default_region, phone_column)
    numbers: set[str] = set()
    problems: list[RowProblem] = []
    for row, line in enumerate(lines, start=1):
        if line.strip():
            try:
                numbers.add(normalise_number(line, default_region))
            except ValueError as exc:
                problems.append(RowProblem(source, row, None, line.strip(), str(exc)))
    return numbers, problems


def _dnc_table(source: str, rows: Rows, default_region: str, phone_column: str) -> tuple[set[str], list[RowProblem]]:
    if not rows:
        return set(), []
    header = _Header(source, rows[0][1])
    phone_at = header.need(phone_column)
    header.check()
    numbers: set[str] = set()
    problems: list[RowProblem] = []
    for row, cells in rows[1:]:
        cell = cells[phone_at] if phone_at < len(cells) else ""
        try:
            numbers.add(normalise_number(cell, default_region))
        except ValueError as exc:
            problems.append(RowProblem(source, row, header.cells[phone_at], cell, str(exc)))
    return numbers, problems
