"""The layer contracts in pyproject.toml are live: breaking one fails `lint-imports`, and `make test` runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # the copy comes first on the path, so the contracts are checked against it, not the installed tree
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_speech_import_in_the_script_breaks_the_pure_script_contract(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "voicebot", tree / "voicebot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")

    clean = _lint_imports(tree)
    assert clean.returncode == 0, f"the copied tree should keep every contract:\n{clean.stdout}{clean.stderr}"

    (tree / "voicebot" / "script" / "test_only_breach.py").write_text("import voicebot.speech.asr\n")
    broken = _lint_imports(tree)
    assert broken.returncode != 0, f"a script module importing speech passed the contracts:\n{broken.stdout}"
    assert "The script engine is pure" in broken.stdout and "BROKEN" in broken.stdout
    assert "voicebot.script.test_only_breach -> voicebot.speech.asr" in broken.stdout


def test_a_telephony_import_in_the_bus_breaks_its_contract(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "voicebot", tree / "voicebot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    (tree / "voicebot" / "bus" / "test_only_breach.py").write_text("from voicebot.telephony import pool\n")
    broken = _lint_imports(tree)
    assert broken.returncode != 0 and "The bus is MQTT only" in broken.stdout, broken.stdout


def test_make_test_runs_every_check_before_pytest() -> None:
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    lines = plan.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if tool in line)
        for tool in ("lint-imports", "ruff check", "ruff format --check", "mypy", "pytest")
    ]
    assert order == sorted(order), plan
