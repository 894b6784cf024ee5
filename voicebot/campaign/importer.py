"""Importing a contacts file straight into a campaign store: a million rows, flat memory, a progress callback.

``load_contacts`` (contacts.py) builds every contact in memory before anything is
stored: fine for a demo list, ~1 GB of Python objects at 1,000,000 rows. This
import reads the file as a stream, normalises numbers in batches (in processes
when the file is large: ``phonenumbers`` is ~100 µs a row, the slowest part), and
hands each batch to ``CampaignStore.import_batch``, which merges duplicates in the
store (within the file: fields filled, tags joined, the higher priority; a number
an earlier import knew: its data updated, its status and attempts kept).

Rows are read and checked by the same functions as ``load_contacts``
(``_read_row``, ``_layout``), so both report a bad row the same way. Two
differences in how duplicates merge, because the store keeps finished contacts,
not the raw rows: a field a later row fills in is one that was empty *or held
the field's default*; and the zone is the first row's, from its column or else
from its number (``load_contacts`` lets a later row's zone column win over the
first row's number).

``voicebot run`` and ``voicebot contacts check`` both import with this, the
second into a throwaway store.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import csv
import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.campaign.contacts import (
    _SNIFF_LINES,
    XLSX_SUFFIXES,
    Contact,
    ContactsError,
    RowProblem,
    _check_file,
    _check_region,
    _contact,
    _encoding,
    _Header,
    _Layout,
    _layout,
    _read_row,
    _sniff_delimiter,
    _xlsx_rows,
    load_dnc,
)
from voicebot.campaign.store import CampaignStore
from voicebot.config import Campaign, ContactField, ContactsImport

BATCH_ROWS = 5000
PARALLEL_FROM_ROWS = 50_000  # below this, starting processes costs more than it saves
_AHEAD = 3  # batches per process in flight: enough to keep them busy, bounded memory

Progress = Callable[[int, int], None]  # (rows read, rows in the file)


@dataclass
class ImportReport:
    source: str
    rows: int = 0  # data rows read (no header, no blank rows)
    contacts: int = 0  # distinct numbers among them
    added: int = 0  # new to the store
    known: int = 0  # the store had them from an earlier import
    duplicates: int = 0  # rows merged into an earlier row of this file
    dnc: int = 0  # this file's numbers that are on the do-not-call list
    problems: list[RowProblem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def import_contacts(
    path: str | Path,
    mapping: ContactsImport,
    default_region: str,
    fields: Mapping[str, ContactField] | None,
    store: CampaignStore,
    on_progress: Progress | None = None,
    workers: int | None = None,
    extensions: bool = False,
) -> ImportReport:
    """Import ``path`` into ``store``; ``ContactsError`` if the file cannot be read as a whole."""
    started = time.perf_counter()
    source = str(path)
    _check_region(source, default_region)
    total, width, rows = _stream(Path(path), mapping.sheet)
    header = next(rows, None)
    if header is None:
        raise ContactsError(f"{source}: the file is empty: it needs a header row and a column '{mapping.phone}'")
    specs = dict(fields or {})
    for name in mapping.columns:  # a column named in the mapping but not declared is an optional field
        specs.setdefault(name, ContactField(required=False))
    layout = _layout(_Header(source, header[1] + [""] * (width - len(header[1]))), mapping, specs)
    defaults = {name: spec.default for name, spec in specs.items() if spec.default}

    report = ImportReport(source)
    first_new = store.begin_import()
    batches = (list(chunk) for chunk in _chunks(rows, BATCH_ROWS))
    job = _Job(source, width, layout, specs, default_region, extensions)
    workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
    for contacts, problems, read in _parsed(batches, job, workers if total - 1 >= PARALLEL_FROM_ROWS else 1):
        report.rows += read
        report.problems.extend(problems)
        added, known, duplicates, dnc = store.import_batch(contacts, first_new, defaults)
        report.added += added
        report.known += known
        report.duplicates += duplicates
        report.dnc += dnc
        if on_progress is not None:
            on_progress(report.rows, total - 1)
    report.contacts = report.added + report.known
    report.seconds = time.perf_counter() - started
    return report


# --- reading ------------------------------------------------------------------------------------------


def _stream(path: Path, sheet: str | None) -> tuple[int, int, Iterator[tuple[int, list[str]]]]:
    """(non-blank rows with the header, the widest row's width, the rows): a CSV is read twice, as a stream,
    so a million rows never sit in memory; the first pass also gives the progress bar its total."""
    _check_file(path)
    if path.suffix.lower() in XLSX_SUFFIXES:
        rows = _xlsx_rows(path, sheet)
        return len(rows), max((len(c) for _, c in rows), default=0), iter(rows)
    encoding = _file_encoding(path)
    with path.open(encoding=encoding, newline="") as f:
        delimiter = _sniff_delimiter([line.rstrip("\r\n") for line in itertools.islice(f, _SNIFF_LINES)])
    total = width = 0
    with path.open(encoding=encoding, newline="") as f:
        for cells in csv.reader(f, delimiter=delimiter):
            if any(cell.strip() for cell in cells):
                total += 1
                width = max(width, len(cells))

    def stream() -> Iterator[tuple[int, list[str]]]:
        with path.open(encoding=encoding, newline="") as f:
            for n, cells in enumerate(csv.reader(f, delimiter=delimiter), start=1):
                stripped = [cell.strip() for cell in cells]
                if any(stripped):
                    yield n, stripped

    return total, width, stream()


def _file_encoding(path: Path) -> str:
    """``_encoding`` of the file, checking UTF-8 a megabyte at a time (the usual case never holds the whole file)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return _encoding(path.read_bytes())


def _chunks(rows: Iterator[tuple[int, list[str]]], size: int) -> Iterator[Iterator[tuple[int, list[str]]]]:
    while True:
        chunk = list(itertools.islice(rows, size))
        if not chunk:
            return
        yield iter(chunk)


@dataclass(frozen=True)
class _Job:
    """What parsing a batch needs: picklable, sent to the parsing processes with each batch."""

    source: str
    width: int
    layout: _Layout
    specs: Mapping[str, ContactField]
    region: str
    extensions: bool


def _parse(job: _Job, rows: list[tuple[int, list[str]]]) -> tuple[list[Contact], list[RowProblem], int]:
    contacts: list[Contact] = []
    problems: list[RowProblem] = []
    for row, cells in rows:
        draft, row_problems = _read_row(
            job.source, row, cells + [""] * (job.width - len(cells)), job.layout, job.specs, job.region, job.extensions
        )
        problems.extend(row_problems)
        if draft is not None:
            contacts.append(_contact(draft, job.specs, job.source))
    return contacts, problems, len(rows)


def _parsed(
    batches: Iterator[list[tuple[int, list[str]]]], job: _Job, workers: int
) -> Iterator[tuple[list[Contact], list[RowProblem], int]]:
    """Each batch parsed, in file order; by ``workers`` processes (spawned: the caller may have threads)."""
    if workers <= 1:
        for batch in batches:
            yield _parse(job, batch)
        return
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        ahead: deque[concurrent.futures.Future] = deque()
        for batch in batches:
            ahead.append(pool.submit(_parse, job, batch))
            if len(ahead) >= workers * _AHEAD:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


# --- a campaign's own import: what ``voicebot run`` does and ``voicebot contacts check`` repeats ---------


def add_campaign_dnc(store: CampaignStore, campaign: Campaign, dnc_path: Path) -> list[RowProblem]:
    """The campaign's DNC file into ``store`` (before the contacts, so the import can say which are on it)."""
    numbers, problems = load_dnc(dnc_path, campaign.default_region, campaign.contacts.phone)
    store.add_dnc(numbers, str(dnc_path))
    return problems


def import_campaign_contacts(
    path: Path, campaign: Campaign, mapping: ContactsImport, store: CampaignStore, on_progress: Progress | None = None
) -> ImportReport:
    """``path`` imported with the campaign's region, contact fields and extension setting."""
    return import_contacts(
        path, mapping, campaign.default_region, campaign.contact_fields, store, on_progress=on_progress, extensions=campaign.extensions.dial
    )
