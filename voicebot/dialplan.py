"""Load a dialplan file: structural checks (pydantic) and graph checks together, all problems at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from voicebot.config import Dialplan
from voicebot.errors import ConfigError
from voicebot.script.graph import ScriptGraph, check_graph
from voicebot.yamlfile import Problem, load_yaml, plain, pydantic_problems


@dataclass(frozen=True)
class LoadedDialplan:
    path: Path
    dialplan: Dialplan
    graph: ScriptGraph
    warnings: tuple[Problem, ...] = ()


def check_dialplan(path: str | Path) -> tuple[LoadedDialplan | None, list[Problem]]:
    """Every problem in the file; the loaded dialplan too when there is no error."""
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        return None, exc.problems
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), "a dialplan is a mapping with campaign and script", "invalid-value")]
    problems: list[Problem] = []
    dialplan = None
    try:
        dialplan = Dialplan.model_validate(plain(doc.data))
    except ValidationError as exc:
        problems += pydantic_problems(doc, exc, Dialplan)
    problems += check_graph(doc)
    problems.sort(key=lambda p: (p.line, p.col))
    if dialplan is None or any(p.severity == "error" for p in problems):
        return None, problems
    graph = ScriptGraph.build(dialplan, doc.path.parent)
    return LoadedDialplan(doc.path, dialplan, graph, tuple(problems)), problems


def load_dialplan(path: str | Path) -> LoadedDialplan:
    """The dialplan, or a ConfigError listing every problem."""
    loaded, problems = check_dialplan(path)
    if loaded is None:
        errors = [p for p in problems if p.severity == "error"]
        raise ConfigError(f"{path}: {len(errors)} error(s)\n" + "\n".join(str(p) for p in errors), problems)
    return loaded
