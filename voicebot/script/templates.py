"""Prompt templates: ``{first_name}`` or ``{first_name|there}`` (a default when the value is empty).

``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from voicebot.errors import ScriptError

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}")
_STRAY = re.compile(r"(?<!\{)\{(?!\{)|(?<!\})\}(?!\})")


def template_fields(text: str) -> list[tuple[str, str | None]]:
    """Names (and defaults) a template uses, in order."""
    return [(m.group(1), m.group(2)) for m in _FIELD.finditer(text) if m.group(1)]


def template_syntax_error(text: str) -> str | None:
    """Why the template is malformed, or None."""
    rest = _FIELD.sub("", text)
    if _STRAY.search(rest):
        return "unbalanced '{' or '}' (write {{ and }} for literal braces; names are letters, digits and _)"
    return None


def render(text: str, values: Mapping[str, object], where: str = "") -> str:
    """Fill a template; a value that is missing or empty with no default is a ScriptError."""

    def fill(m: re.Match) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        name, default = m.group(1), m.group(2)
        value = values.get(name)
        if value is None or value == "":
            if default is not None:
                return default
            raise ScriptError(f"{where}: no value for {{{name}}}" if where else f"no value for {{{name}}}", code="template-missing-value")
        return str(value)

    return _FIELD.sub(fill, text)
