"""Loading dialplans: every problem reported with file, line and field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.dialplan import check_dialplan, load_dialplan
from voicebot.errors import ConfigError

DATA = Path(__file__).parent / "data"
DIALPLANS = Path(__file__).parent.parent / "dialplans"


def mutate(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[Path, str]:
    text = (DATA / "minimal.yaml").read_text()
    assert text.count(old) >= count, f"fixture lacks {old!r}"
    text = text.replace(old, new, count)
    path = tmp_path / "dialplan.yaml"
    path.write_text(text)
    return path, text


def line_of(text: str, marker: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return i
    raise AssertionError(f"marker {marker!r} not found")


def codes(problems) -> list[str]:
    return [p.code for p in problems]


def test_minimal_fixture_is_valid():
    loaded = load_dialplan(DATA / "minimal.yaml")
    assert set(loaded.graph.nodes) == {"hello", "ask_time", "confirm", "handoff", "bye_unclear"}


@pytest.mark.parametrize("path", sorted(DIALPLANS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_dialplans_are_valid(path):
    loaded, problems = check_dialplan(path)
    assert loaded is not None, "\n".join(map(str, problems))
    assert not problems


def test_three_planted_mistakes_are_all_reported_with_their_lines(tmp_path):
    text = (DATA / "minimal.yaml").read_text()
    text = text.replace('"yes": ask_time', '"yes": ask_tim  # MISTAKE-1')
    text = text.replace("    confirm:\n      say:", "    confirm:\n      sya: oops  # MISTAKE-2\n      say:")
    text = text.replace('say: "See you {when}."', 'say: "See you {wen}."  # MISTAKE-3')
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    loaded, problems = check_dialplan(path)
    assert loaded is None
    by_code = {p.code: p for p in problems}
    assert by_code["unknown-node"].line == line_of(text, "MISTAKE-1")
    assert "ask_tim" in by_code["unknown-node"].message and "did you mean 'ask_time'" in by_code["unknown-node"].message
    assert by_code["unknown-key"].line == line_of(text, "MISTAKE-2")
    assert "did you mean 'say'" in by_code["unknown-key"].message
    assert by_code["unknown-template-variable"].line == line_of(text, "MISTAKE-3")
    assert "{wen}" in by_code["unknown-template-variable"].message
    # the typo also leaves ask_time/confirm unreachable: reported too, not instead
    assert "unreachable-node" in codes(problems)


def test_validate_command_prints_all_problems_and_fails(tmp_path):
    path, text = mutate(tmp_path, '"yes": ask_time', '"yes": nowhere')
    text = text.replace("    confirm:\n      say:", "    confirm:\n      colour: red\n      say:")
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "voicebot.cli", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{path}:{line_of(text, 'nowhere')}:" in proc.stdout
    assert f"{path}:{line_of(text, 'colour')}:" in proc.stdout
    assert "unknown key 'colour'" in proc.stdout


def test_validate_command_passes_good_files():
    proc = subprocess.run([sys.executable, "-m", "voicebot.cli", "validate", str(DATA / "minimal.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok (5 nodes" in proc.stdout


def test_yaml_syntax_error_names_the_line(tmp_path):
    path, text = mutate(tmp_path, "  start: hello", "  start: [hello")
    loaded, problems = check_dialplan(path)
    assert loaded is None
    assert problems[0].code == "yaml-syntax"
    assert problems[0].line >= line_of(text, "start: [hello")


def test_duplicate_key_is_an_error(tmp_path):
    path, text = mutate(tmp_path, "  start: hello\n", "  start: hello\n  start: confirm\n")
    loaded, problems = check_dialplan(path)
    assert loaded is None and problems[0].code == "yaml-syntax"
    assert "duplicate" in problems[0].message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_dialplan(tmp_path / "nope.yaml")


def test_node_without_way_out(tmp_path):
    path, text = mutate(tmp_path, '      say: "See you {when}."\n      hangup: booked', '      say: "See you {when}."')
    _, problems = check_dialplan(path)
    (p,) = [p for p in problems if p.code == "no-way-out"]
    assert p.line == line_of(text, "    confirm:")


def test_loop_without_exit_is_no_way_out(tmp_path):
    # confirm → hello by 'next' and hello's routes never end: every path loops
    text = (DATA / "minimal.yaml").read_text()
    text = text.replace('"no": {say: "Alright.", hangup: not_interested}', '"no": ask_time')
    text = text.replace('      say: "See you {when}."\n      hangup: booked', '      say: "See you {when}."\n      next: hello')
    text = text.replace("      transfer: desk\n      on_transfer_fail: bye_unclear", "      next: hello")
    text = text.replace("  fallback: bye_unclear\n", "")
    path = tmp_path / "loop.yaml"
    path.write_text(text)
    _, problems = check_dialplan(path)
    stuck = {p.loc[-1] for p in problems if p.code == "no-way-out"}
    assert {"hello", "ask_time", "confirm"} <= stuck


def test_inline_password_is_refused(tmp_path):
    path, text = mutate(
        tmp_path,
        '    uri_template: "sip:{number}@127.0.0.1:5080"',
        '    uri_template: "sip:{number}@127.0.0.1:5080"\n    password: hunter2',
    )
    _, problems = check_dialplan(path)
    assert any("environment variable" in p.message for p in problems)
    assert all("hunter2" not in str(p) for p in problems)


@pytest.mark.parametrize(
    "old,new,code,fragment",
    [
        ("transfer: desk", "transfer: dsk", "unknown-operator", "did you mean 'desk'"),
        ('"yes": ask_time', '"yse": ask_time', "unknown-intent", "did you mean 'yes'"),
        ("  start: hello", "  start: helo", "unknown-node", "did you mean 'hello'"),
        ('    uri_template: "sip:{number}@127.0.0.1:5080"', '    uri_template: "sip:127.0.0.1"', "invalid-value", "{number}"),
        ("  fallback: bye_unclear", "  fallback: bye", "unknown-node", "unknown node 'bye'"),
        ('say: "See you {when}."', 'say: "See you {when."', "template-syntax", "unbalanced"),
        ("  name: minimal", "  name: minimal\n  retry: {delays: {bussy: 10m}}", "unknown-outcome", "did you mean 'busy'"),
        ("  name: minimal", "  name: minimal\n  retry: {delays: {busy: soon}}", "invalid-value", "not a duration"),
        ("  name: minimal", "  name: minimal\n  calling_window: {start: '9am'}", "invalid-value", "HH:MM"),
        ("  name: minimal", "  name: minimal\n  calling_window: {timezone: Mars/Olympus}", "invalid-value", "unknown time zone"),
        ('        "0": handoff', '        "x": handoff', "invalid-value", "not a DTMF key"),
        ("      hangup: booked", "      hangup: booked\n      next: hello", "invalid-value", "either listens"),
    ],
)
def test_single_mistakes(tmp_path, old, new, code, fragment):
    path, text = mutate(tmp_path, old, new)
    loaded, problems = check_dialplan(path)
    assert loaded is None
    hits = [p for p in problems if p.code == code and fragment in p.message]
    assert hits, "\n".join(map(str, problems))
    assert all(p.line > 0 for p in problems)
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", str(hits[0]))


def test_wav_prompt_must_exist(tmp_path):
    path, text = mutate(tmp_path, '      say: "Connecting you."', "      say: {wav: connecting.wav, text: Connecting you.}")
    _, problems = check_dialplan(path)
    assert [p.code for p in problems] == ["missing-file"]
    (tmp_path / "connecting.wav").write_bytes(b"RIFF")
    loaded, problems = check_dialplan(path)
    assert loaded is not None and not problems


def test_readme_dialplan_example_is_valid(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = next(b for b in readme.split("```yaml\n")[1:] if b.startswith("version: 1"))
    path = tmp_path / "readme.yaml"
    path.write_text(block.split("```")[0])
    loaded, problems = check_dialplan(path)
    assert loaded is not None and not problems, "\n".join(map(str, problems))


def test_voicemail_message_template_is_checked(tmp_path):
    path, text = mutate(tmp_path, "operators:", "voicemail:\n  message: 'Hi {frist_name}'\noperators:")
    _, problems = check_dialplan(path)
    (p,) = [p for p in problems if p.code == "unknown-template-variable"]
    assert p.line == line_of(text, "frist_name") and "did you mean {first_name}" in p.message
