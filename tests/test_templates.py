from __future__ import annotations

import pytest

from voicebot.errors import ScriptError
from voicebot.script.templates import render, template_fields, template_syntax_error


def test_fields_and_defaults():
    assert template_fields("Hi {first_name|there}, from {company}. {{literal}}") == [("first_name", "there"), ("company", None)]


def test_render_uses_values_then_defaults():
    assert render("Hi {name|there}!", {"name": "Anna"}) == "Hi Anna!"
    assert render("Hi {name|there}!", {}) == "Hi there!"
    assert render("Hi {name|there}!", {"name": ""}) == "Hi there!"
    assert render("Hi{name|}!", {}) == "Hi!"
    assert render("{{x}} {n}", {"n": 3}) == "{x} 3"


def test_missing_value_is_an_error_naming_the_field():
    with pytest.raises(ScriptError, match=r"\{company\}"):
        render("from {company}", {}, where="prompt greeting")


@pytest.mark.parametrize("text", ["Hi {name", "Hi name}", "{first name}", "{}"])
def test_syntax_errors(text):
    assert template_syntax_error(text)


@pytest.mark.parametrize("text", ["Hi {name}", "plain", "{{not a field}}", "{a|b c}"])
def test_good_syntax(text):
    assert template_syntax_error(text) is None
