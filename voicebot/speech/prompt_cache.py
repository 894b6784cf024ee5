"""Prompt audio rendered before the call: an on-disk PCM cache.

The campaign manager renders every prompt it can know in advance (static ones
once, personalised ones per contact; ``voicebot.campaign.prompts`` knows what a
script will say) so that a call never waits for Piper; the media workers read
the same files. Entries are keyed by (voice, rate, text), so
changing the voice or its settings never plays stale audio.

A cache file is a 16-byte header (magic, rate, PCM length, CRC-32 of the PCM)
followed by PCM16 mono. The header catches a truncated or corrupted file (a full
disk, a crash before the data reached the disk, bit rot): such an entry counts
as a miss and is rendered again. Files are written to a temporary name and
renamed into place, so a reader in another process sees the old file or the
whole new one, never half of it. No fsync: a file lost to a crash fails its
check and is rendered again.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
import time
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from voicebot.audio.frames import read_wav
from voicebot.audio.resample import resample
from voicebot.errors import TtsError

_HEADER = struct.Struct("<4sIII")  # magic, rate_hz, PCM bytes, CRC-32 of the PCM
_MAGIC = b"VBP1"


class Tts(Protocol):
    @property
    def voice_id(self) -> str: ...

    def synthesize(self, text: str, rate_hz: int) -> bytes: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries found damaged and rendered again (also counted as misses)
    synthesis_s: float = 0.0  # wall time spent in the TTS on misses
    audio_s: float = 0.0  # length of the audio synthesised on misses


class PromptCache:
    """PCM16 prompts on disk, keyed by (voice, rate, text); safe to share between processes."""

    def __init__(self, directory: Path, tts: Tts) -> None:
        self.directory = Path(directory)
        self.tts = tts
        self.stats = CacheStats()
        self._lock = threading.Lock()  # stats only: files are safe without it

    def path(self, text: str, rate_hz: int) -> Path:
        return self._path([self.tts.voice_id, rate_hz, text])

    def has(self, text: str, rate_hz: int) -> bool:
        return self._read(self.path(text, rate_hz), rate_hz) is not None

    def get(self, text: str, rate_hz: int) -> bytes:
        """The prompt's PCM at ``rate_hz``: from disk, or synthesised now and stored."""
        path = self.path(text, rate_hz)
        pcm = self._lookup(path, rate_hz)
        if pcm is None:
            started = time.perf_counter()
            pcm = self.tts.synthesize(text, rate_hz)
            with self._lock:
                self.stats.synthesis_s += time.perf_counter() - started
                self.stats.audio_s += len(pcm) / (2 * rate_hz)
            self._write(path, pcm, rate_hz)
        return pcm

    def get_wav(self, wav: Path, rate_hz: int) -> bytes:
        """A recorded prompt at ``rate_hz``; converted once per version of the file (size and mtime)."""
        try:
            st = wav.stat()
        except OSError as exc:
            raise TtsError(f"recorded prompt {wav}: {exc.strerror}", code="tts-wav-unreadable") from exc
        path = self._path(["wav", str(wav.resolve()), st.st_size, st.st_mtime_ns, rate_hz])
        pcm = self._lookup(path, rate_hz)
        if pcm is None:
            try:
                source, source_hz = read_wav(wav)
            except (OSError, EOFError, ValueError, wave.Error) as exc:  # not a file, truncated, not WAV, not 16-bit
                raise TtsError(f"recorded prompt {wav}: {exc}", code="tts-wav-unreadable") from exc
            pcm = resample(source, source_hz, rate_hz)
            self._write(path, pcm, rate_hz)
        return pcm

    # -- files --------------------------------------------------------------------------------

    def _path(self, key_parts: list) -> Path:
        key = hashlib.sha256(json.dumps(key_parts, ensure_ascii=False).encode()).hexdigest()
        return self.directory / key[:2] / f"{key}.pcm"

    def _lookup(self, path: Path, rate_hz: int) -> bytes | None:
        pcm = self._read(path, rate_hz)
        with self._lock:
            if pcm is not None:
                self.stats.hits += 1
            else:
                self.stats.misses += 1
                self.stats.corrupt += path.exists()
        return pcm

    @staticmethod
    def _read(path: Path, rate_hz: int) -> bytes | None:
        """The PCM of a complete, intact entry; None if it is missing or damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) < _HEADER.size:
            return None
        magic, rate, size, crc = _HEADER.unpack_from(data)
        pcm = data[_HEADER.size :]
        if magic != _MAGIC or rate != rate_hz or size != len(pcm) or crc != zlib.crc32(pcm):
            return None
        return pcm

    @staticmethod
    def _write(path: Path, pcm: bytes, rate_hz: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600, which is what we want: personalised
        # prompts say contacts' names.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_HEADER.pack(_MAGIC, rate_hz, len(pcm), zlib.crc32(pcm)))
                f.write(pcm)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
