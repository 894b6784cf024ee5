"""`voicebot contacts check`: the problems `voicebot run` would print, and no call at all.

The messy export of the issue: `;`-separated cp1251 with Cyrillic headers, 8-prefixed
numbers, a duplicate written differently, a bad number, a word for a number, a number with
an extension ("доб. 12") and one on the DNC list. A sipp UAS listens the whole time: the
check must send it nothing; the run sends it exactly one INVITE per dialable number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import invites_by_attempt

DATA = Path(__file__).parent / "data" / "contacts"

DIALPLAN = """
version: 1
campaign:
  name: messy-ru
  trunk: {{uri_template: "sip:{{number}}@127.0.0.1:{port}"}}
  max_concurrent_calls: 4
  calls_per_second: 20
  default_region: RU
  calling_window: {{start: "00:00", end: "24:00", days: [mon, tue, wed, thu, fri, sat, sun], timezone: contact}}
  contacts: {{phone: Телефон, tags: Метки, columns: {{first_name: Имя}}, dnc_file: {dnc}}}
  contact_fields:
    first_name: {{required: false, default: коллега}}
speech:
  language: en  # the recogniser is never reached (every call is busy); PocketSphinx ships English only
  tts: {{engine: espeak, voice: ru}}
  asr: {{engine: pocketsphinx}}
script:
  start: hello
  nodes:
    hello: {{say: "Здравствуйте, {{first_name|коллега}}!", hangup: done}}
"""


def _voicebot(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicebot.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_check_prints_the_problems_run_prints_and_dials_nothing(sipp, tmp_path: Path) -> None:
    trace = tmp_path / "invites.log"
    port = sipp("uas_486", "-m", "50", "-trace_msg", "-message_file", str(trace))
    dialplan = tmp_path / "messy.yaml"
    dialplan.write_text(DIALPLAN.format(port=port, dnc=DATA / "messy_ru_dnc.txt"), encoding="utf-8")
    contacts = DATA / "messy_ru.csv"

    check = _voicebot("contacts", "check", str(contacts), "--dialplan", str(dialplan), cwd=tmp_path)
    assert check.returncode == 1, check.stdout + check.stderr  # rows with problems
    assert not trace.exists() or "INVITE sip:" not in trace.read_text(errors="replace"), "the check dialled"
    lines = check.stdout.splitlines()
    assert lines[0] == f"{contacts}: 8 rows, 5 contacts, 1 duplicate rows merged, 1 on the DNC list, 2 rows with problems"
    problems = [line for line in lines if line.startswith(f"  {contacts}:")]
    assert [p.split(": ", 1)[0].strip() for p in problems] == [f"{contacts}:5", f"{contacts}:7"]
    assert "  row 9: +79120000001" in lines
    assert any(line.split()[:2] == ["Asia/Yekaterinburg", "1"] for line in (x.strip() for x in lines))
    assert lines[-1] == "nothing was dialled"
    as_json = json.loads(_voicebot("contacts", "check", str(contacts), "--dialplan", str(dialplan), "--json", cwd=tmp_path).stdout)
    assert as_json["tags"] == {"vip": 2, "east": 1, "new": 1} and as_json["contacts"] == 5

    run = _voicebot(
        "run", str(dialplan), "--contacts", str(contacts), "--db", str(tmp_path / "run.db"), "--no-broker", "--until-idle", cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert [line for line in run.stdout.splitlines() if line.startswith(f"  {contacts}:")] == problems

    dialled = {m.split("@")[0] for m in trace.read_text(errors="replace").split("INVITE sip:")[1:]}
    assert dialled == {"+79267654321", "+79161234567", "+74951234567", "+73432223344"}  # the extension is not in the URI
    assert all(len(calls) == 1 for calls in invites_by_attempt(trace).values())
