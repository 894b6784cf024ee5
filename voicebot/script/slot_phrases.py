"""What people say when a node captures a slot, as phrases for a restricted ASR grammar.

A grammar-mode recogniser only returns phrases it was given, so a node that
captures a time must offer time expressions ("tomorrow at three", "friday
afternoon", "через два часа"). They are enumerated from small word tables, a
few hundred per language; every one of them is readable by ``extract_slot``
(a test checks this). ``text`` slots are open answers: no grammar (None).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product

_EN_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_RU_NUMBERS = (
    "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать тринадцать "
    "четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать"
).split()
_RU_TENS = "двадцать тридцать сорок пятьдесят шестьдесят семьдесят восемьдесят девяносто".split()

_EN_DAYS = (
    "today",
    "tomorrow",
    "the day after tomorrow",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "next week",
    "on monday",
    "on tuesday",
    "on wednesday",
    "on thursday",
    "on friday",
)
_EN_PARTS = ("morning", "afternoon", "evening", "in the morning", "in the afternoon", "in the evening")
_EN_HOURS = _EN_NUMBERS[1:13]
_EN_RELATIVE = (
    "in an hour",
    "in two hours",
    "in three hours",
    "in half an hour",
    "in thirty minutes",
    "in fifteen minutes",
    "later today",
    "tonight",
    "this afternoon",
    "this evening",
    "after lunch",
)
_EN_LEADS = ("", "call me ")

_RU_DAYS = ("сегодня", "завтра", "послезавтра", "в понедельник", "во вторник", "в среду", "в четверг", "в пятницу", "на следующей неделе")
_RU_PARTS = ("утром", "днем", "вечером", "после обеда")
_RU_HOURS = (
    "в час",
    "в два",
    "в три",
    "в четыре",
    "в пять",
    "в шесть",
    "в семь",
    "в восемь",
    "в девять",
    "в десять",
    "в одиннадцать",
    "в двенадцать",
)
_RU_RELATIVE = (
    "через час",
    "через два часа",
    "через три часа",
    "через полчаса",
    "через пятнадцать минут",
    "сегодня вечером",
    "после обеда",
)
_RU_LEADS = ("", "перезвоните ")


@lru_cache(maxsize=32)
def slot_phrases(slot_type: str, language: str) -> tuple[str, ...] | None:
    """Phrases a recogniser should allow for this slot type; None: anything (free text)."""
    lang = language.split("-")[0].lower()
    if slot_type == "text":
        return None
    builders = {"en": _english, "ru": _russian}
    if lang not in builders:
        return None  # no tables for this language: recognise without a grammar
    return tuple(dict.fromkeys(builders[lang](slot_type)))


def _numbers(units: list[str], tens: list[str]) -> list[str]:
    return units + tens + [f"{t} {u}" for t, u in product(tens, units[1:10])]


def _english(slot_type: str) -> list[str]:
    if slot_type == "time":
        cores = list(_EN_DAYS) + list(_EN_RELATIVE)
        cores += [f"at {h}" for h in _EN_HOURS] + [f"{h} o'clock" for h in _EN_HOURS]
        cores += [f"{h} thirty" for h in _EN_HOURS] + [f"{h} pm" for h in _EN_HOURS[:7]] + [f"{h} am" for h in _EN_HOURS[7:]]
        cores += [f"{d} at {h}" for d, h in product(_EN_DAYS, _EN_HOURS)]
        cores += [f"{d} {p}" for d, p in product(_EN_DAYS[:8], _EN_PARTS[:3])]
        return [lead + core for lead, core in product(_EN_LEADS, cores) if lead == "" or not core.startswith("on ")]
    if slot_type == "number":
        return _numbers(_EN_NUMBERS, _EN_TENS) + ["a hundred", "one hundred"]
    if slot_type == "digits":
        return _EN_NUMBERS[:10]
    if slot_type == "yes_no":
        return ["yes", "no", "yeah", "nope", "sure", "correct", "that's right", "not really", "of course", "no thanks"]
    raise ValueError(f"unknown slot type '{slot_type}'")


def _russian(slot_type: str) -> list[str]:
    if slot_type == "time":
        cores = list(_RU_DAYS) + list(_RU_RELATIVE) + list(_RU_HOURS)
        cores += [f"{d} {h}" for d, h in product(_RU_DAYS, _RU_HOURS)]
        cores += [f"{d} {p}" for d, p in product(_RU_DAYS, _RU_PARTS)]
        cores += [f"{h} {p}" for h, p in product(_RU_HOURS, ("утра", "дня", "вечера"))]
        return [lead + core for lead, core in product(_RU_LEADS, cores)]
    if slot_type == "number":
        return _numbers(_RU_NUMBERS, _RU_TENS) + ["сто"]
    if slot_type == "digits":
        return _RU_NUMBERS[:10]
    if slot_type == "yes_no":
        return ["да", "нет", "конечно", "верно", "правильно", "не надо", "ага", "угу"]
    raise ValueError(f"unknown slot type '{slot_type}'")
