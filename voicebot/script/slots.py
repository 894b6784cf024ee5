"""Slot capture: pull a normalised value (time, number, digits, yes/no) out of ASR text.

ASR output is lowercase, mostly unpunctuated, and says numbers as words
("twenty five", "двадцать пять") or, depending on the engine, as digits.
English and Russian have word tables; any other language gets only the
language-independent parts (digit strings and HH:MM).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, TypeVar

SLOT_TYPES = ("text", "time", "number", "digits", "yes_no")

# A clock time ("15:30"), a run of digits, or a word in any script.
_TOKEN = re.compile(r"\d{1,2}:\d{2}|\d+|[^\W\d_]+")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")

_EMPTY: Mapping = MappingProxyType({})
_NONE: frozenset[str] = frozenset()
_T = TypeVar("_T")

# Which number-word kinds may follow which, so "one two three" reads as three
# numbers rather than being summed into one.
_FOLLOWS = {
    "unit": {None, "tens", "hundred", "thousand", "joiner"},
    "teen": {None, "hundred", "thousand", "joiner"},
    "tens": {None, "hundred", "thousand", "joiner"},
    "hundred": {None, "thousand"},
}

# A part of day that says which half of the clock a bare hour is in.
_PART_MERIDIEM = {"morning": "am", "afternoon": "pm", "evening": "pm", "lunch": "pm"}
_PART_CLOCK = {"noon": "12:00", "midnight": "00:00"}


class _Lang(NamedTuple):
    """The word tables of one language; the empty default serves languages without tables."""

    units: Mapping[str, int] = _EMPTY  # 0..19, every form that ASR writes
    tens: Mapping[str, int] = _EMPTY
    hundreds: Mapping[str, int] = _EMPTY  # whole-hundred words: "двести"
    hundred: frozenset[str] = _NONE  # the multiplier: "two hundred"
    thousand: frozenset[str] = _NONE
    joiners: frozenset[str] = _NONE  # "a hundred and twenty"
    articles: frozenset[str] = _NONE  # "a hundred", "an hour"
    zero_words: frozenset[str] = _NONE  # zero only inside a digit string: "oh"
    yes_no: Mapping[tuple[str, ...], str] = _EMPTY
    negators: frozenset[str] = _NONE
    days: Mapping[tuple[str, ...], str] = _EMPTY
    parts: Mapping[tuple[str, ...], str] = _EMPTY
    meridiems: Mapping[tuple[str, ...], str] = _EMPTY
    hour_markers: Mapping[tuple[str, ...], bool] = _EMPTY  # "o'clock", "часа"
    lone_hour: frozenset[str] = _NONE  # "в час" is one o'clock
    minute_words: frozenset[str] = _NONE
    durations: Mapping[str, str] = _EMPTY  # word -> "hour" / "minute"
    relative_start: frozenset[str] = _NONE  # "in two hours", "через час"
    relative_fixed: Mapping[tuple[str, ...], tuple[int, str]] = _EMPTY
    offsets: Mapping[tuple[str, ...], int] = _EMPTY  # minutes to add to the hour after them
    past: frozenset[str] = _NONE  # "twenty past three"
    to: frozenset[str] = _NONE  # "ten to five"
    ordinal_offsets: Mapping[str, int] = _EMPTY  # "половина третьего": 30 min into the hour before
    ordinals: Mapping[str, int] = _EMPTY  # genitive ordinals: "третьего" -> 3


def _counted(words: str, first: int = 0, step: int = 1) -> dict[str, int]:
    """{"zero": 0, "one": 1, ...} from "zero one ..."."""
    return {word: first + step * n for n, word in enumerate(words.split())}


def _phrases(phrases: str, value: _T) -> dict[tuple[str, ...], _T]:
    """{("of", "course"): value, ...} from "of course, ..."."""
    return {tuple(phrase.split()): value for phrase in phrases.split(",")}


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RU_WEEKDAYS = ("понедельник", "вторник", "среду, среда", "четверг", "пятницу, пятница", "субботу, суббота", "воскресенье")

_EN = _Lang(
    units=_counted(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
    ),
    tens=_counted("twenty thirty forty fifty sixty seventy eighty ninety", 20, 10),
    hundred=frozenset({"hundred"}),
    thousand=frozenset({"thousand"}),
    joiners=frozenset({"and"}),
    articles=frozenset({"a", "an"}),
    zero_words=frozenset({"oh"}),
    yes_no={
        **_phrases("yes, yeah, yep, yup, sure, correct, right, of course, absolutely, okay, ok, alright, no problem", "yes"),
        **_phrases("no, nope, not really, nah, of course not, absolutely not", "no"),
        **_phrases("right now, not sure", ""),  # hold a yes/no word but answer neither
    },
    negators=frozenset({"not"}),
    days={
        **_phrases("today, tonight, this morning, this afternoon, this evening", "today"),
        **_phrases("tomorrow", "tomorrow"),
        **_phrases("day after tomorrow", "day_after_tomorrow"),
        **_phrases("next week", "next_week"),
        **_phrases("this week", "this_week"),
        **{(day,): day for day in _WEEKDAYS},
    },
    parts={
        **_phrases("morning", "morning"),
        **_phrases("afternoon, after lunch", "afternoon"),
        **_phrases("evening, tonight, night", "evening"),
        **_phrases("noon, midday", "noon"),
        **_phrases("midnight", "midnight"),
        **_phrases("lunch, lunchtime", "lunch"),
    },
    meridiems={**_phrases("am, a m", "am"), **_phrases("pm, p m", "pm")},
    hour_markers=_phrases("o clock, oclock", True),
    minute_words=frozenset({"minute", "minutes"}),
    durations={
        **dict.fromkeys("hour hours".split(), "hour"),
        **dict.fromkeys("minute minutes min mins".split(), "minute"),
    },
    relative_start=frozenset({"in"}),
    relative_fixed=_phrases("half an hour, half hour", (30, "minute")),
    offsets={("half", "past"): 30, ("quarter", "past"): 15, ("quarter", "to"): -15},
    past=frozenset({"past", "after"}),
    to=frozenset({"to", "till", "before"}),
)

_RU = _Lang(
    units={
        **_counted(
            "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать"
            " тринадцать четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать"
        ),
        **_counted("одна одну одно", 1, 0),
        "две": 2,
    },
    tens=_counted("двадцать тридцать сорок пятьдесят шестьдесят семьдесят восемьдесят девяносто", 20, 10),
    hundreds=_counted("сто двести триста четыреста пятьсот шестьсот семьсот восемьсот девятьсот", 100, 100),
    thousand=frozenset({"тысяча", "тысячи", "тысяч", "тысячу"}),
    yes_no={
        **_phrases("да, ага, угу, конечно, верно, правильно, хорошо", "yes"),
        **_phrases("нет, не надо, неа, неверно, неправильно, нет конечно", "no"),
    },
    negators=frozenset({"не"}),
    days={
        **_phrases("сегодня", "today"),
        **_phrases("завтра", "tomorrow"),
        **_phrases("послезавтра", "day_after_tomorrow"),
        **_phrases("следующей неделе, через неделю", "next_week"),
        **_phrases("этой неделе", "this_week"),
        **{key: day for day, forms in zip(_WEEKDAYS, _RU_WEEKDAYS) for key in _phrases(forms, day)},
    },
    parts={
        **_phrases("утром, с утра", "morning"),
        **_phrases("днем, после обеда", "afternoon"),
        **_phrases("вечером", "evening"),
        **_phrases("полдень", "noon"),
        **_phrases("полночь", "midnight"),
        **_phrases("обед, обеда, обеду", "lunch"),
    },
    meridiems={("утра",): "am", ("дня",): "pm", ("вечера",): "pm", ("ночи",): "night"},
    hour_markers=_phrases("час, часа, часов", True),
    lone_hour=frozenset({"час"}),
    minute_words=frozenset({"минута", "минуту", "минуты", "минут"}),
    durations={
        **dict.fromkeys("час часа часов".split(), "hour"),
        **dict.fromkeys("минуту минуты минут".split(), "minute"),
    },
    relative_start=frozenset({"через"}),
    relative_fixed=_phrases("полчаса", (30, "minute")),
    offsets={("без", "четверти"): -15, ("без", "пяти"): -5, ("без", "десяти"): -10, ("без", "двадцати"): -20},
    ordinal_offsets={"половина": 30, "половине": 30, "пол": 30, "четверть": 15},
    ordinals=_counted(
        "первого второго третьего четвертого пятого шестого седьмого восьмого девятого десятого одиннадцатого двенадцатого", 1
    ),
)

_LANGS = {"en": _EN, "ru": _RU}


def extract_slot(slot_type: str, text: str, language: str = "en") -> str | None:
    """The slot value found in `text`, normalised as below, or None when there is none.

    - text: the stripped text.
    - digits: every digit said, in order: "one two three" -> "123".
    - number: the first number said, as a decimal integer: "a hundred and twenty" -> "120".
    - yes_no: "yes" or "no"; the answer said last wins.
    - time: "<day> <clock>", either part optional. Day: today, tomorrow,
      day_after_tomorrow, monday..sunday, next_week, this_week or "in N hour(s)/minute(s)".
      Clock: 24-hour "HH:MM" or morning / afternoon / evening / lunch.
    `language` is "en", "ru" or a tag such as "ru-RU"; other languages get digits and HH:MM only.
    Raises ValueError for a slot type not in SLOT_TYPES.
    """
    if slot_type not in SLOT_TYPES:
        raise ValueError(f"unknown slot type {slot_type!r}; expected one of {', '.join(SLOT_TYPES)}")
    if slot_type == "text":
        return text.strip() or None
    lang = _LANGS.get(language.split("-")[0].lower(), _Lang())
    tokens = _tokenize(text)
    if slot_type == "digits":
        return _extract_digits(tokens, lang)
    if slot_type == "number":
        return _extract_number(tokens, lang)
    if slot_type == "yes_no":
        return _extract_yes_no(tokens, lang)
    return _extract_time(tokens, lang)


def _tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("ё", "е"))


def _match_at(tokens: list[str], i: int, table: Mapping[tuple[str, ...], object]) -> tuple[object, int] | None:
    """The value of the longest phrase of `table` starting at tokens[i], and the index after it."""
    for size in (3, 2, 1):
        if i + size <= len(tokens) and (value := table.get(tuple(tokens[i : i + size]))) is not None:
            return value, i + size
    return None


def _find_phrase(tokens: list[str], table: Mapping[tuple[str, ...], str]) -> str | None:
    for i in range(len(tokens)):
        if found := _match_at(tokens, i, table):
            return found[0]
    return None


# --- numbers -----------------------------------------------------------------


def _word_kind(word: str, lang: _Lang) -> tuple[str | None, int]:
    if word in lang.units:
        value = lang.units[word]
        return ("zero" if value == 0 else "unit" if value < 10 else "teen"), value
    if word in lang.tens:
        return "tens", lang.tens[word]
    if word in lang.hundreds:
        return "hundred", lang.hundreds[word]
    if word in lang.hundred:
        return "times100", 100
    if word in lang.thousand:
        return "thousand", 1000
    if word in lang.joiners:
        return "joiner", 0
    if word in lang.articles:
        return "article", 1
    return None, 0


def _read_number(tokens: list[str], i: int, lang: _Lang) -> tuple[int, int] | None:
    """The number starting at tokens[i] as (value, index after it), or None."""
    if i < len(tokens) and tokens[i].isdigit():
        return int(tokens[i]), i + 1
    total = current = 0
    last = None  # kind of the previous word
    j = i
    while j < len(tokens):
        kind, value = _word_kind(tokens[j], lang)
        next_kind = _word_kind(tokens[j + 1], lang)[0] if j + 1 < len(tokens) else None
        if kind == "zero" and last is None:
            return 0, j + 1
        if kind in _FOLLOWS and last in _FOLLOWS[kind]:
            current += value
        elif kind == "times100" and last == "unit":
            current *= 100
            kind = "hundred"
        elif kind == "thousand" and total == 0 and last != "joiner":
            total, current = max(current, 1) * 1000, 0
        elif kind == "article" and last is None and next_kind in ("times100", "thousand"):
            current, kind = 1, "unit"
        elif kind == "joiner" and last in ("hundred", "thousand") and next_kind in ("unit", "teen", "tens"):
            pass
        else:
            break
        last = kind
        j += 1
    return None if last is None else (total + current, j)


def _extract_number(tokens: list[str], lang: _Lang) -> str | None:
    for i in range(len(tokens)):
        if found := _read_number(tokens, i, lang):
            return str(found[0])
    return None


def _extract_digits(tokens: list[str], lang: _Lang) -> str | None:
    digits = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if any(c.isdigit() for c in token):
            digits.append("".join(c for c in token if c.isdigit()))
        elif token in lang.zero_words and _next_to_digit(tokens, i, lang):
            digits.append("0")
        elif found := _read_number(tokens, i, lang):
            digits.append(str(found[0]))
            i = found[1]
            continue
        i += 1
    return "".join(digits) or None


def _next_to_digit(tokens: list[str], i: int, lang: _Lang) -> bool:
    # "oh" is only a zero among other digits; elsewhere it is an interjection.
    neighbours = tokens[max(i - 1, 0) : i] + tokens[i + 1 : i + 2]
    return any(t.isdigit() or t in lang.zero_words or _word_kind(t, lang)[0] in ("zero", "unit", "teen", "tens") for t in neighbours)


# --- yes / no ------------------------------------------------------------------


def _extract_yes_no(tokens: list[str], lang: _Lang) -> str | None:
    answer = None
    i = 0
    while i < len(tokens):
        if found := _match_at(tokens, i, lang.yes_no):
            value, i = found
            answer = value or answer
        elif tokens[i] in lang.negators and (found := _match_at(tokens, i + 1, lang.yes_no)):
            answer, i = "no", found[1]  # "not correct", "не хорошо"
        else:
            i += 1
    return answer


# --- time ----------------------------------------------------------------------


def _extract_time(tokens: list[str], lang: _Lang) -> str | None:
    relative, relative_span = _find_relative(tokens, lang)
    day = relative or _find_phrase(tokens, lang.days)
    part = _find_phrase(tokens, lang.parts)
    clock = _find_clock(tokens, lang, skip=relative_span, hint=_PART_MERIDIEM.get(part))
    if clock is None and part is not None:
        clock = _PART_CLOCK.get(part, part)
    return " ".join(p for p in (day, clock) if p) or None


def _find_relative(tokens: list[str], lang: _Lang) -> tuple[str | None, range]:
    """'in N hours' / 'через N минут' and the token span it covers."""
    for i, token in enumerate(tokens):
        if token not in lang.relative_start:
            continue
        if fixed := _match_at(tokens, i + 1, lang.relative_fixed):
            (amount, unit), end = fixed
        else:
            if found := _read_number(tokens, i + 1, lang):
                amount, j = found
            elif i + 1 < len(tokens) and tokens[i + 1] in lang.articles:
                amount, j = 1, i + 2
            else:
                amount, j = 1, i + 1  # "через час"
            if j >= len(tokens) or tokens[j] not in lang.durations:
                continue
            unit, end = lang.durations[tokens[j]], j + 1
        return f"in {amount} {unit}{'' if amount == 1 else 's'}", range(i, end)
    return None, range(0)


def _find_clock(tokens: list[str], lang: _Lang, skip: range, hint: str | None) -> str | None:
    i = 0
    while i < len(tokens):
        found = None if i in skip else _clock_at(tokens, i, lang)
        if found is None:
            number = _read_number(tokens, i, lang)  # skip all of "twenty five", not just "twenty"
            i = number[1] if number else i + 1
            continue
        hour, minute, end, is_24h = found
        meridiem = _match_at(tokens, end, lang.meridiems)
        if not is_24h:
            hour = _to_24h(hour, meridiem[0] if meridiem else hint)
        total = (hour * 60 + minute) % (24 * 60)
        return f"{total // 60:02d}:{total % 60:02d}"
    return None


def _clock_at(tokens: list[str], i: int, lang: _Lang) -> tuple[int, int, int, bool] | None:
    """(hour as said, minutes to add, index after it, already 24-hour?) of a clock time at tokens[i]."""
    token = tokens[i]
    if match := _CLOCK.fullmatch(token):
        hour, minute = int(match[1]), int(match[2])
        if hour > 23 or minute > 59:
            return None
        # "09:30" and "15:30" are plainly 24-hour; "3:30" is just how ASR wrote "three thirty".
        return hour, minute, i + 1, hour > 12 or token.startswith("0")
    if offset := _match_at(tokens, i, lang.offsets):  # "half past two", "без четверти пять"
        minutes, j = offset
        return _with_hour(tokens, j, lang, minutes)
    if token in lang.ordinal_offsets and i + 1 < len(tokens) and tokens[i + 1] in lang.ordinals:
        return _ordinal_clock(lang.ordinals[tokens[i + 1]], lang.ordinal_offsets[token], i + 2)
    for prefix, minutes in lang.ordinal_offsets.items():  # written as one word: "полтретьего"
        if token.startswith(prefix) and token[len(prefix) :] in lang.ordinals:
            return _ordinal_clock(lang.ordinals[token[len(prefix) :]], minutes, i + 1)
    if token in lang.lone_hour:
        return 1, 0, i + 1, False
    number = _read_number(tokens, i, lang)
    if number is None:
        return None
    value, j = number
    # "twenty past three"; the multiple of five keeps "from two to four" a plain hour.
    if j < len(tokens) and tokens[j] in (lang.past | lang.to) and value in range(5, 31, 5):
        if clock := _with_hour(tokens, j + 1, lang, value if tokens[j] in lang.past else -value):
            return clock
    if value > 23 or (j < len(tokens) and tokens[j] in lang.durations and (tokens[j],) not in lang.hour_markers):
        return None  # "twenty five", "five minutes": not a clock time
    if marker := _match_at(tokens, j, lang.hour_markers):
        j = marker[1]
    minute, j = _read_minutes(tokens, j, lang)
    return value, minute, j, value > 12


def _with_hour(tokens: list[str], j: int, lang: _Lang, minutes: int) -> tuple[int, int, int, bool] | None:
    number = _read_number(tokens, j, lang)
    if number is None or not 1 <= number[0] <= 12:
        return None
    return number[0], minutes, number[1], False


def _ordinal_clock(ordinal: int, minutes: int, end: int) -> tuple[int, int, int, bool]:
    # Russian counts toward the coming hour: "половина третьего" is 2:30.
    return (ordinal - 1) or 12, minutes, end, False


def _read_minutes(tokens: list[str], j: int, lang: _Lang) -> tuple[int, int]:
    """Minutes said after the hour ("thirty", "oh five", "ноль пять") and the index after them."""
    zero_led = j < len(tokens) and (tokens[j] in lang.zero_words or _word_kind(tokens[j], lang)[0] == "zero")
    number = _read_number(tokens, j + 1 if zero_led else j, lang)
    if number is None or number[0] > 59 or (number[0] < 10 and not zero_led):
        return 0, j
    end = number[1]
    if end < len(tokens) and tokens[end] in lang.minute_words:
        end += 1
    return number[0], end


def _to_24h(hour: int, meridiem: str | None) -> int:
    if hour > 12:
        return hour
    if meridiem in ("am", "night"):
        return 0 if hour == 12 else hour
    if meridiem == "pm":
        return hour + 12 if hour < 12 else hour
    # Business hours: nobody asks for a call-back at 3 a.m. or 9 p.m. without saying so.
    return hour + 12 if 1 <= hour <= 7 else hour
