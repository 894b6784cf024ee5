"""The project's error tree.

Every error carries a stable machine ``code`` (kebab-case) that lands in call
records and error events, and a message that names the file/line/field or the
call it is about.
"""

from __future__ import annotations


class VoicebotError(Exception):
    code = "voicebot-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(VoicebotError):
    """A dialplan, settings or test file is invalid; ``problems`` lists every finding."""

    code = "config-invalid"

    def __init__(self, message: str, problems: list | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.problems = list(problems or [])


class ScriptError(VoicebotError):
    """The conversation script cannot go on (e.g. a template value is missing)."""

    code = "script-error"


class AsrError(VoicebotError):
    code = "asr-error"


class TtsError(VoicebotError):
    code = "tts-error"


class SipError(VoicebotError):
    code = "sip-error"
