"""The command line, run as a user runs it: chat over stdin, test-script, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "dialplans" / "demo_en.yaml"


def voicebot(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicebot.cli", *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def chat(lines: list[str], *extra: str) -> str:
    proc = voicebot("chat", str(DEMO), *extra, stdin="".join(line + "\n" for line in lines))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def summary(out: str) -> tuple[str, list[str]]:
    outcome = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("outcome: "))
    path = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("path: ")).split(" → ")
    return outcome, path


def test_chat_walks_from_greeting_to_a_booked_meeting():
    out = chat(["yes", "we use a spreadsheet", "sure", "tuesday works", "yes"], "--contact", "first_name=Anna")
    assert "bot: Hi Anna, this is Alex from Cloudline" in out
    outcome, path = summary(out)
    assert outcome == "meeting_booked"
    assert path == ["greeting", "discovery", "pitch", "propose_meeting", "confirm_meeting", "goodbye_meeting"]
    assert "variables: meeting_time='Tuesday at ten in the morning'" in out


@pytest.mark.parametrize(
    "lines,node,outcome",
    [
        (["we already have a provider", "no"], "objection_already_have", "not_interested"),
        (["not interested", "not a priority"], "objection_not_interested", "not_interested"),
        (["yes", "in house", "no time for this", "call back later", "tomorrow morning"], "objection_no_time", "callback"),
        (["just send me an offer", "no just send it"], "objection_send_offer", "send_info"),
        (["I'm busy", "friday at two"], "ask_callback", "callback"),
        (["please don't call me again"], "dnc_goodbye", "dnc"),
        (["let me speak to a real person"], "handoff_request", "handoff"),
        (["how much does it cost"], "handoff_buying", "handoff"),
    ],
)
def test_chat_reaches_each_branch(lines, node, outcome):
    got_outcome, path = summary(chat(lines))
    assert node in path
    assert got_outcome == outcome


def test_chat_commands_silence_dtmf_and_hangup():
    out = chat(["/silence", "", "/dtmf 5", "/hangup"])
    assert "Hello, are you still there?" in out
    outcome, path = summary(out)
    assert outcome == "customer_hangup" and path == ["greeting"]


def test_chat_reports_unknown_command_and_goes_on():
    out = chat(["/dance", "who is this", "yes"])
    assert "unknown command '/dance'" in out
    assert summary(out)[1] == ["greeting", "discovery"]


def test_chat_end_of_input_while_listening():
    out = chat(["yes"])
    assert "input ended while listening at 'discovery'" in out
    assert "outcome: none (still listening)" in out


def test_chat_bad_contact_flag():
    proc = voicebot("chat", str(DEMO), "--contact", "first_name")
    assert proc.returncode == 1 and "FIELD=VALUE" in proc.stderr


def test_chat_on_invalid_dialplan_prints_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("next: confirm_callback", "next: confirm_calback"))
    proc = voicebot("chat", str(bad))
    assert proc.returncode == 1
    assert "unknown node 'confirm_calback' (did you mean 'confirm_callback'?)" in proc.stderr


@pytest.mark.parametrize("tests", sorted((ROOT / "dialplans" / "tests").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_dialplan_passes_its_script_tests(tests):
    proc = voicebot("test-script", str(tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = int(proc.stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 10, "an example dialplan ships with a real test suite"


def test_every_example_dialplan_has_a_test_file():
    for dialplan in (ROOT / "dialplans").glob("*.yaml"):
        assert (ROOT / "dialplans" / "tests" / dialplan.name).is_file(), f"{dialplan.name} has no script tests"


def test_test_script_shows_where_a_conversation_diverged(tmp_path):
    tests = tmp_path / "t.yaml"
    tests.write_text(
        f"dialplan: {DEMO}\n"
        "tests:\n"
        "  - name: expects a meeting but gets an objection\n"
        '    turns: ["yes", "we use a spreadsheet", "no thanks"]\n'
        "    expect:\n"
        "      outcome: meeting_booked\n"
        "      path: [greeting, discovery, pitch, propose_meeting]\n"
    )
    proc = voicebot("test-script", str(tests))
    assert proc.returncode == 1
    out = proc.stdout
    assert f"FAIL expects a meeting but gets an objection ({tests}:3)" in out
    assert "path differs at step 4: expected 'propose_meeting', got 'objection_not_interested'" in out
    assert "turn 3 at 'pitch': customer \"no thanks\" → intent 'not_interested'" in out
    assert "outcome: expected 'meeting_booked', got 'none yet (still listening at 'objection_not_interested')'" in out
    assert out.strip().endswith("0 passed, 1 failed")


def test_test_script_reports_turns_after_the_end(tmp_path):
    tests = tmp_path / "t.yaml"
    tests.write_text(
        f'dialplan: {DEMO}\ntests:\n  - name: talks after hangup\n    turns: ["wrong number", "hello?"]\n    expect: {{outcome: wrong_number}}\n'
    )
    proc = voicebot("test-script", str(tests))
    assert proc.returncode == 1
    assert 'the call ended (wrong_number) after turn 1; turn 2 "hello?" and later were never heard' in proc.stdout


def test_test_script_rejects_unknown_nodes_and_bad_turns(tmp_path):
    tests = tmp_path / "t.yaml"
    tests.write_text(f"dialplan: {DEMO}\ntests:\n  - name: x\n    turns: [{{silence: true, dtmf: '1'}}]\n    expect: {{path: [greting]}}\n")
    proc = voicebot("test-script", str(tests))
    assert proc.returncode == 1
    assert f"{tests}:4:" in proc.stderr and "a turn is one of" in proc.stderr
    tests.write_text(f"dialplan: {DEMO}\ntests:\n  - name: x\n    turns: [hi]\n    expect: {{path: [greting]}}\n")
    proc = voicebot("test-script", str(tests))
    assert proc.returncode == 1 and "unknown node 'greting'" in proc.stderr


def test_test_script_show_prints_conversations_and_table():
    proc = voicebot("test-script", "--show", str(ROOT / "dialplans" / "tests" / "demo_en.yaml"))
    assert proc.returncode == 0
    assert 'customer: "yes, go ahead"' in proc.stdout
    assert "Outcomes: demo-en-cloud-savings" in proc.stdout and "meeting_booked" in proc.stdout


def test_no_command_prints_help():
    proc = voicebot()
    assert proc.returncode == 2 and "validate" in proc.stdout
