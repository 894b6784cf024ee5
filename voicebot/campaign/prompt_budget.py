"""A byte budget over the prompt cache's files, with least-recently-used eviction.

Rendering every contact's greeting up front filled 46 MB in 100 s and would have
taken ~11 GB per 100,000 contacts, so the cache of a mass campaign must forget.
What it may forget is decided here, as pure bookkeeping: the caller says which
entries exist (with their size), which are in use (pinned: static prompts, the
prompts of contacts being dialled or about to be), and asks for room before it
renders; the ledger answers with what to delete. Deleting is the caller's
``remove`` callback, so this class can be tested without files.

An entry is named by its cache file's path: that also covers files an earlier
run left behind, whose text is unknown.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetStats:
    budget_bytes: int
    bytes: int  # on disk now, as far as the ledger knows
    reserved_bytes: int  # promised to renders in progress
    peak_bytes: int  # the most bytes + reserved ever held
    entries: int
    pinned: int
    evicted: int  # entries deleted to make room
    refused: int  # renders refused because everything left was pinned

    def as_dict(self) -> dict[str, int]:
        return {
            "budget_bytes": self.budget_bytes,
            "bytes": self.bytes,
            "reserved_bytes": self.reserved_bytes,
            "peak_bytes": self.peak_bytes,
            "entries": self.entries,
            "pinned": self.pinned,
            "evicted": self.evicted,
            "refused": self.refused,
        }


class PromptBudget:
    """Entries (a key and a size), least recently used first; pinned ones are never evicted.

    ``reserve`` before a render, ``add`` (or ``cancel``) after it: bytes + reservations
    never exceed the budget, so the directory never does either (up to an estimate that
    came out short, which ``add`` corrects at once by evicting).
    """

    def __init__(self, budget_bytes: int, remove: Callable[[str], None]) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"a prompt cache budget must be positive (got {budget_bytes} bytes)")
        self.budget_bytes = budget_bytes
        self._remove = remove
        self._entries: OrderedDict[str, int] = OrderedDict()
        self._pins: Counter[str] = Counter()
        self._permanent: set[str] = set()
        self.bytes = 0
        self.reserved = 0
        self.peak = 0
        self.evicted = 0
        self.refused = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    # -- entries ------------------------------------------------------------------------------------

    def add(self, key: str, size: int, permanent: bool = False, reserved: int = 0) -> bool:
        """A rendered (or found) entry of ``size`` bytes, now the most recently used. ``reserved``
        returns what ``reserve`` promised for it. False if it did not fit and was removed again."""
        self.reserved -= reserved
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old
        self._entries[key] = size
        self.bytes += size
        if permanent:
            self._permanent.add(key)
        self._note_peak()
        if self.bytes + self.reserved > self.budget_bytes:
            self._evict(self.bytes + self.reserved - self.budget_bytes, keep=key)
        if self.bytes + self.reserved > self.budget_bytes and key not in self._permanent and not self._pins[key]:
            self._drop(key)
            self.refused += 1
            return False
        return True

    def touch(self, key: str) -> None:
        if key in self._entries:
            self._entries.move_to_end(key)

    def pin(self, key: str) -> None:
        self._pins[key] += 1
        self.touch(key)

    def unpin(self, key: str) -> None:
        if self._pins[key] <= 1:
            del self._pins[key]
        else:
            self._pins[key] -= 1

    def pinned(self, key: str) -> bool:
        return key in self._permanent or self._pins[key] > 0

    # -- room for a render ---------------------------------------------------------------------------

    def reserve(self, size: int) -> bool:
        """Room for a render of about ``size`` bytes, evicting what it must. False (and nothing
        reserved) when the unpinned entries cannot free enough: the render should wait."""
        over = self.bytes + self.reserved + size - self.budget_bytes
        if over > 0 and self._evict(over) < over:
            self.refused += 1
            return False
        self.reserved += size
        self._note_peak()
        return True

    def cancel(self, size: int) -> None:
        """A reserved render that produced nothing."""
        self.reserved = max(0, self.reserved - size)

    def stats(self) -> BudgetStats:
        pinned = sum(1 for k in self._entries if self.pinned(k))
        return BudgetStats(self.budget_bytes, self.bytes, self.reserved, self.peak, len(self._entries), pinned, self.evicted, self.refused)

    # -- inside ----------------------------------------------------------------------------------------

    def _evict(self, need: int, keep: str | None = None) -> int:
        freed = 0
        for key in list(self._entries):
            if freed >= need:
                break
            if key == keep or self.pinned(key):
                continue
            freed += self._entries[key]
            self._drop(key)
            self.evicted += 1
        return freed

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key)
        self._remove(key)

    def _note_peak(self) -> None:
        self.peak = max(self.peak, self.bytes + self.reserved)
