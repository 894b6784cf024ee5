"""Synthetic contact lists for the mass-campaign benchmark and its CI-sized test.

Every number is a valid, distinct North American number (``phonenumbers`` accepts
exchanges 200-999 under the area codes used here), so the list measures the
import and the dialler, not the rejection path. First names repeat (a list of
real people shares first names too), so identical greetings are shared.
"""

from __future__ import annotations

import csv
from pathlib import Path

_AREAS = (212, 415, 312, 617, 206, 303, 404, 512)
_PER_AREA = 800 * 10_000  # exchanges 200-999, lines 0000-9999
_FIRST_NAMES = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jack", "Kate", "Liam")


def synthetic_number(i: int) -> str:
    area = _AREAS[(i // _PER_AREA) % len(_AREAS)]
    rest = i % _PER_AREA
    return f"+1 {area} {200 + rest // 10_000} {rest % 10_000:04d}"


def write_synthetic_contacts(path: Path, count: int) -> Path:
    """``count`` contacts (phone, first_name, company, tags) as a CSV, written as it goes."""
    if count > _PER_AREA * len(_AREAS):
        raise ValueError(f"at most {_PER_AREA * len(_AREAS)} distinct synthetic numbers (asked for {count})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "first_name", "company", "tags"])
        for i in range(count):
            writer.writerow([synthetic_number(i), _FIRST_NAMES[i % len(_FIRST_NAMES)], f"Company {i % 997}", f"batch{i % 4}"])
    return path
