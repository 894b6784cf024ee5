"""YAML files that remember where every value came from.

Dialplans and script-test files are read with ruamel.yaml in round-trip mode so
that each problem found later (by pydantic or by the graph checks) can be
reported as ``file:line:col`` with the dotted field path.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from voicebot.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One finding about a file: where it is, what is wrong, and a stable code."""

    path: str
    line: int  # 1-based; 0 when the file itself is the problem
    col: int  # 1-based
    loc: Loc
    message: str
    code: str
    severity: Literal["error", "warning"] = "error"

    @property
    def field(self) -> str:
        return dotted(self.loc)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        what = f"{self.field}: " if self.loc else ""
        return f"{where}: {self.severity}: {what}{self.message} [{self.code}]"


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class YamlFile:
    path: Path
    data: Any
    problems: list[Problem] = field(default_factory=list)

    def position(self, loc: Loc) -> tuple[int, int]:
        """Line and column (1-based) of the deepest part of ``loc`` present in the file."""
        node = self.data
        line, col = 1, 1
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                kline, kcol = node.lc.key(part)
                line, col = kline + 1, kcol + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                iline, icol = node.lc.item(part)
                line, col = iline + 1, icol + 1
                node = node[part]
            else:
                break
        return line, col

    def problem(self, loc: Loc, message: str, code: str, severity: Literal["error", "warning"] = "error") -> Problem:
        line, col = self.position(loc)
        return Problem(str(self.path), line, col, tuple(loc), message, code, severity)


def load_yaml(path: str | Path) -> YamlFile:
    """Parse ``path``; a syntax error becomes a ConfigError naming its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", [Problem(str(path), 0, 0, (), "no such file", "file-missing")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", [Problem(str(path), 0, 0, (), f"cannot read: {exc}", "file-unreadable")]) from exc
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x) or str(exc)
        problem = Problem(str(path), line, col, (), f"YAML syntax: {msg}", "yaml-syntax")
        raise ConfigError(str(problem), [problem]) from exc
    if data is None:
        data = CommentedMap()
    return YamlFile(path, data)


def plain(value: Any) -> Any:
    """The same data as built-in dicts, lists and scalars (pydantic wants no YAML types)."""
    if isinstance(value, dict):
        return {plain_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def plain_key(key: Any) -> Any:
    # YAML reads an unquoted 1 as an int; DTMF keys and the like are strings to us.
    return str(key) if isinstance(key, (int, float)) and not isinstance(key, bool) else plain(key)


def pydantic_problems(doc: YamlFile, exc: Any, model: type | None = None, prefix: Loc = ()) -> list[Problem]:
    """Turn a pydantic ValidationError into positioned problems, one per error.

    ``model`` is the class that was validated (at ``prefix``); it lets an
    unknown key be answered with the closest known one.
    """
    problems = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if not _is_pydantic_tag(p))
        kind = err["type"]
        msg = err["msg"]
        if kind == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
            owner = _model_at(model, loc[len(prefix) : -1]) if model else None
            allowed = list(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            if hint:
                msg += f" (did you mean '{hint[0]}'?)"
            code = "unknown-key"
        elif kind == "missing":
            code = "missing-key"
            msg = f"required key '{loc[-1]}' is missing"
        else:
            code = "invalid-value"
            msg = msg.removeprefix("Value error, ")
        problems.append(doc.problem(loc, msg, code))
    return problems


def _is_pydantic_tag(part: Any) -> bool:
    # Union and validator wrappers add loc parts such as 'function-after[...]'.
    return isinstance(part, str) and ("[" in part and part.endswith("]"))


def _model_at(model: Any, loc: Loc) -> Any:
    """The pydantic model class that holds the value at ``loc`` below ``model``."""
    pending: list[Any] = [model]
    for part in loc:
        tp = _unwrap_model_or_container(pending.pop())
        if tp is None:
            return None
        if isinstance(tp, tuple):  # (container kind, item type)
            pending.append(tp[1])
            continue
        fld = tp.model_fields.get(part) if isinstance(part, str) else None
        if fld is None:
            return None
        pending.append(fld.annotation)
    found = _unwrap_model_or_container(pending.pop())
    return found if isinstance(found, type) else None


def _unwrap_model_or_container(tp: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (dict, list, tuple) and args:
        return (origin, args[-1] if origin is dict else args[0])
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in args:
            found = _unwrap_model_or_container(arg)
            if found is not None:
                return found
    return None
