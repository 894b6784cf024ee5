import pytest

from voicebot.script.slots import SLOT_TYPES, extract_slot


def test_slot_types():
    assert SLOT_TYPES == ("text", "time", "number", "digits", "yes_no")


def test_unknown_slot_type_raises():
    with pytest.raises(ValueError, match="colour"):
        extract_slot("colour", "red")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  hello there \n", "hello there"), ("john smith", "john smith"), ("", None), ("   ", None)],
)
def test_text(text, expected):
    assert extract_slot("text", text) == expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("one two three", "en", "123"),
        ("4 5 6", "en", "456"),
        ("zero one", "en", "01"),
        ("five oh five", "en", "505"),
        ("oh my code is one two", "en", "12"),  # a leading interjection is not a zero
        ("мой код один два три", "ru", "123"),
        ("ноль семь", "ru", "07"),
        ("my number is 555 12 34", "en", "5551234"),
        ("1 2 3", "de", "123"),
        ("eins zwei", "de", None),
        ("no digits here", "en", None),
        ("", "en", None),
    ],
)
def test_digits(text, language, expected):
    assert extract_slot("digits", text, language) == expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("twenty five", "en", "25"),
        ("a hundred and twenty", "en", "120"),
        ("3", "en", "3"),
        ("two thousand", "en", "2000"),
        ("zero", "en", "0"),
        ("nineteen", "en", "19"),
        ("nine hundred ninety nine thousand nine hundred ninety nine", "en", "999999"),
        ("i need about forty two of them", "en", "42"),
        ("one two three", "en", "1"),
        ("двадцать пять", "ru", "25"),
        ("сто двадцать", "ru", "120"),
        ("две тысячи", "ru", "2000"),
        ("тысяча двести", "ru", "1200"),
        ("одна", "ru", "1"),
        ("одну тысячу", "ru", "1000"),
        ("ноль", "ru", "0"),
        ("42", "fr", "42"),
        ("quarante deux", "fr", None),
        ("none at all", "en", None),
        ("не знаю", "ru", None),
    ],
)
def test_number(text, language, expected):
    assert extract_slot("number", text, language) == expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        *[(w, "en", "yes") for w in ("yes", "yeah", "yep", "sure", "correct", "right", "of course", "absolutely", "okay", "ok")],
        *[(w, "en", "no") for w in ("no", "nope", "not really", "nah")],
        *[(w, "ru", "yes") for w in ("да", "ага", "конечно", "верно", "правильно", "хорошо")],
        *[(w, "ru", "no") for w in ("нет", "не надо", "неа")],
        ("Yes, that's right.", "en-US", "yes"),
        ("yes no", "en", "no"),
        ("no wait yes", "en", "yes"),
        ("that is not correct", "en", "no"),
        ("absolutely not", "en", "no"),
        ("да нет", "ru-RU", "no"),
        ("нет да", "ru", "yes"),
        ("не верно", "ru", "no"),
        ("i don't know", "en", None),
        ("it's just not a priority right now", "en", None),
        ("i'm not sure", "en", None),
        ("yes i'm free right now", "en", "yes"),
        ("не знаю", "ru", None),
        ("yes", "de", None),
        ("", "en", None),
    ],
)
def test_yes_no(text, language, expected):
    assert extract_slot("yes_no", text, language) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow at three", "tomorrow 15:00"),
        ("3 pm", "15:00"),
        ("at 10 am on friday", "friday 10:00"),
        ("three thirty", "15:30"),
        ("half past two", "14:30"),
        ("quarter to five", "16:45"),
        ("15:00", "15:00"),
        ("next week", "next_week"),
        ("this week", "this_week"),
        ("monday morning", "monday morning"),
        ("call me in two hours", "in 2 hours"),
        ("in an hour", "in 1 hour"),
        ("in 30 minutes", "in 30 minutes"),
        ("in one minute", "in 1 minute"),
        ("in half an hour", "in 30 minutes"),
        ("tonight", "today evening"),
        ("the day after tomorrow at noon", "day_after_tomorrow 12:00"),
        ("nine o'clock", "09:00"),
        ("nine oclock", "09:00"),
        ("at eleven thirty", "11:30"),
        ("3", "15:00"),
        ("at 3", "15:00"),
        ("twelve", "12:00"),
        ("eight", "08:00"),
        ("seven pm", "19:00"),
        ("seven am", "07:00"),
        ("twelve am", "00:00"),
        ("ten in the evening", "22:00"),
        ("three oh five", "15:05"),
        ("twenty past four", "16:20"),
        ("from two to four", "14:00"),
        ("today after lunch", "today afternoon"),
        ("at lunch", "lunch"),
        ("sunday", "sunday"),
        ("tomorrow", "tomorrow"),
        ("give me five minutes", None),
        ("twenty five", None),
        ("i don't know", None),
        ("", None),
    ],
)
def test_time_en(text, expected):
    assert extract_slot("time", text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("завтра в три", "tomorrow 15:00"),
        ("в пятницу в десять утра", "friday 10:00"),
        ("послезавтра", "day_after_tomorrow"),
        ("в понедельник утром", "monday morning"),
        ("сегодня вечером", "today evening"),
        ("в 15:30", "15:30"),
        ("через два часа", "in 2 hours"),
        ("через час", "in 1 hour"),
        ("через полчаса", "in 30 minutes"),
        ("через двадцать минут", "in 20 minutes"),
        ("на следующей неделе", "next_week"),
        ("в половине третьего", "14:30"),
        ("после обеда", "afternoon"),
        ("в полдень", "12:00"),
        ("в три часа дня", "15:00"),
        ("в девять вечера", "21:00"),
        ("в двенадцать ночи", "00:00"),
        ("в два ночи", "02:00"),
        ("в час дня", "13:00"),
        ("в три часа тридцать минут", "15:30"),
        ("без четверти пять", "16:45"),
        ("полтретьего", "14:30"),
        ("четверть третьего", "14:15"),
        ("в половине первого", "12:30"),
        ("во вторник", "tuesday"),
        ("в среду", "wednesday"),
        ("в четверг", "thursday"),
        ("в субботу вечером", "saturday evening"),
        ("в воскресенье", "sunday"),
        ("в ПЯТНИЦУ", "friday"),
        ("Ещё не знаю", None),
        ("не знаю", None),
    ],
)
def test_time_ru(text, expected):
    assert extract_slot("time", text, "ru-RU") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("um 15:00", "15:00"), ("09:30", "09:30"), ("morgen", None), ("3", "15:00")],
)
def test_time_other_language_uses_only_digits_and_clock(text, expected):
    assert extract_slot("time", text, "de") == expected
