"""The HTML report in a real browser: headless Chromium draws every chart without a console message.

Leaves a screenshot of the page in build/test-artifacts/report.png (the path is printed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from voicebot.cli import main
from voicebot.dialplan import load_dialplan
from voicebot.peers.sample_campaign import build_sample_campaign

ROOT = Path(__file__).resolve().parent.parent
DIALPLAN = ROOT / "dialplans" / "demo_en.yaml"
ARTIFACTS = ROOT / "build" / "test-artifacts"
TIMEOUT_S = 180  # a cold Chromium start on a loaded 2-core box takes seconds, not minutes
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$", re.MULTILINE)


def _chromium(tmp_path: Path, *args: str) -> tuple[str, list[str]]:
    """Run headless Chromium once; returns its stdout and every console message the page produced."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (Debian chromium; `make setup` installs it)"
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        # let the page's scripts and plotly's deferred drawing finish before the dump or screenshot
        "--virtual-time-budget=15000",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the process started here: its renderer and GPU helpers
        proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT_S} s: {' '.join(cmd)}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err[-3000:]}"
    return out, _CONSOLE.findall(err)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    db = build_sample_campaign(tmp / "campaign.db", load_dialplan(DIALPLAN).graph, str(DIALPLAN))
    html = tmp / "report.html"
    assert main(["report", str(db), "--html", str(html)]) == 0
    return html


def test_console_messages_are_seen(tmp_path):
    # The check below is only worth something if a page's console output reaches it.
    page = tmp_path / "broken.html"
    page.write_text('<html><body><script>console.error("drawing failed"); undefinedFunction();</script></body></html>')
    _, console = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("drawing failed" in m for m in console)
    assert any("Uncaught ReferenceError" in m for m in console)


def test_every_chart_renders_without_console_errors(report_html, tmp_path):
    dom, console = _chromium(tmp_path, "--dump-dom", report_html.as_uri())
    assert console == []
    expected = re.search(r'data-charts-expected="(\d+)"', dom)
    rendered = re.search(r'data-charts-rendered="(\d+)"', dom)
    assert expected and rendered, "the page's script did not run to the end"
    assert int(expected.group(1)) == 6
    assert int(rendered.group(1)) == 6
    for chart in ("chart-outcomes", "chart-hours", "chart-funnel", "chart-graph-reach", "chart-graph-nomatch", "chart-heatmap"):
        assert re.search(rf'id="{chart}" class="[^"]*js-plotly-plot', dom), f"{chart} was not drawn"
    assert dom.count('class="main-svg"') >= 6
    assert "greeting" in dom and "is this about the invoice" in dom


def test_screenshot_of_the_report(report_html, tmp_path, capsys):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    _, console = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1400,7000", f"--screenshot={shot}", report_html.as_uri())
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 7000)
    assert len(data) > 100_000  # a page of charts, not a blank one (a blank page of that size: ~45 kB)
    with capsys.disabled():
        print(f"\nreport screenshot: {shot}")
