"""Pydantic models of a dialplan: the campaign, speech settings, operators and the script.

The models are frozen: a dialplan is loaded and validated once and never mutated.
Structural checks live here; the checks that need the whole graph (dangling
``next``, unreachable nodes, template variables) live in ``voicebot.script.graph``.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

# Outcomes produced by the dialer and the engine themselves; script authors add
# their own labels with ``hangup:``.
SYSTEM_OUTCOMES = frozenset(
    {
        "busy",  # 486/600
        "no_answer",  # ring timeout, 480/408
        "rejected",  # 603
        "invalid_number",  # 404/484
        "trunk_error",  # 5xx, transport failure
        "voicemail",  # answering machine detected
        "worker_lost",  # media worker died mid-call
        "interrupted",  # the dialer itself stopped (crash, kill) while the call was in progress
        "not_dialled",  # the call never left: no free worker slot, or its worker died first
        "customer_hangup",  # the person hung up mid-script
        "max_duration",  # the call reached the campaign's max_call_duration_s
        "stopped",  # the dialer ended the call (campaign stopped, shutdown)
        "handoff",  # transferred to an operator
        "handoff_failed",  # transfer failed and the script had no fallback
        "no_input",  # the person stayed silent past every reprompt
        "no_match",  # the person was never understood
        "dnc",  # asked not to be called again: the number joins the DNC list
    }
)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DTMF_KEY = re.compile(r"^[0-9*#]$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration_s(value: Any) -> float:
    """'90s', '10m', '2h', '1d' or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 2h or 1d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"'{value}' is not a duration: use e.g. 30s, 10m, 2h or 1d")
        unit = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
        seconds = float(m.group(1)) * unit
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]


def _identifier(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{what} '{value}' must be letters, digits and _ (not starting with a digit)")
    return value


# --- campaign -----------------------------------------------------------------------


class Trunk(Frozen):
    """How calls leave: an IP trunk (no registration) or a registered SIP account."""

    uri_template: str = Field(description="request URI per number, e.g. sip:{number}@pbx.example.com")
    registrar: str | None = None
    proxy: str | None = None
    username: str | None = None
    password_env: str | None = None
    transport: Literal["udp", "tcp", "tls"] = "udp"
    codecs: tuple[Literal["PCMU", "PCMA", "G722", "opus"], ...] = ("PCMU", "PCMA")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("a password is never written in a dialplan: put it in an environment variable and name it with password_env")
        return data

    @field_validator("uri_template")
    @classmethod
    def _uri_template(cls, v: str) -> str:
        if not v.startswith(("sip:", "sips:")):
            raise ValueError(f"'{v}' is not a SIP URI (it must start with sip: or sips:)")
        if "{number}" not in v:
            raise ValueError("uri_template must contain {number}, where the dialled number goes")
        return v

    @field_validator("registrar", "proxy")
    @classmethod
    def _sip_uri(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sip:", "sips:")):
            raise ValueError(f"'{v}' is not a SIP URI (it must start with sip: or sips:)")
        return v

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError(f"'{v}' is not an environment variable name")
        return v

    @model_validator(mode="after")
    def _auth_complete(self) -> Trunk:
        if self.registrar and not self.username:
            raise ValueError("registering with a registrar needs a username")
        if self.password_env and not self.username:
            raise ValueError("password_env is set but username is not")
        return self


class CallingWindow(Frozen):
    """When calls may be placed, in the contact's local time (or a fixed zone)."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    timezone: str = Field("contact", description="'contact' (from the number) or an IANA zone such as Europe/Moscow")
    default_timezone: str = "UTC"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> Any:
        if isinstance(v, int):  # YAML 1.1 sexagesimal never applies here, but be explicit
            raise ValueError("write times as quoted 'HH:MM'")
        if isinstance(v, str) and v.strip() == "24:00":
            return time.max  # the end of the day: "00:00"-"24:00" is the whole day
        if isinstance(v, str) and not re.match(r"^\d{1,2}:\d{2}$", v.strip()):
            raise ValueError(f"'{v}' is not a time of day: use HH:MM, e.g. 09:30 (24:00 for the end of the day)")
        return v

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: Any) -> Any:
        if isinstance(v, list):
            bad = [d for d in v if str(d).lower()[:3] not in _DAYS]
            if bad:
                raise ValueError(f"unknown day(s) {bad}: use {', '.join(_DAYS)}")
            return tuple(str(d).lower()[:3] for d in v)
        return v

    @field_validator("timezone", "default_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        if v == "contact":
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v}' (use an IANA name such as Europe/Berlin)") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> CallingWindow:
        if self.start == self.end:
            raise ValueError("the calling window is empty: start equals end")
        if self.start == time.max:
            raise ValueError("a calling window cannot start at 24:00")
        return self


class RetryPolicy(Frozen):
    """Per outcome, how long to wait before the next attempt; unlisted outcomes are final."""

    max_attempts: int = Field(3, ge=1, le=50)
    delays: dict[str, DurationS] = Field(default_factory=dict)


class ContactField(Frozen):
    required: bool = True
    default: str | None = None
    example: str | None = None


def _contact_fields(value: Any) -> Any:
    # A plain list of names means "all required"; a mapping gives defaults.
    if isinstance(value, list):
        return {str(name): {} for name in value}
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


class ContactsImport(Frozen):
    """How a contacts file (CSV or XLSX, one header row) maps to contacts. Column names are matched
    case-insensitively; a contact field without an entry in ``columns`` reads the column of its own name."""

    phone: str = "phone"  # the column with the number
    columns: dict[str, str] = Field(default_factory=dict)  # contact field -> column header
    tags: str | None = "tags"  # a column of tags separated by "," or ";"
    priority: str | None = "priority"  # an integer column: higher is dialled first
    timezone: str | None = "timezone"  # an IANA zone column; otherwise the zone comes from the number
    region: str | None = None  # an ISO country column for numbers written without +country
    sheet: str | None = None  # XLSX: the sheet to read (default: the first)
    dnc_file: str | None = None  # numbers never to dial (CSV/XLSX with the same phone column, or one per line); relative to the dialplan


class PromptCacheSettings(Frozen):
    """Personalised prompts are rendered just in time into a cache held under a byte budget."""

    budget_mb: float = Field(256.0, gt=0, description="bytes of prompt audio on disk at most (static prompts included)")
    lookahead_s: DurationS = Field(10.0, gt=0, description="render the contacts due within this many seconds of dialling")
    render_workers: int | None = Field(None, ge=1, le=64, description="rendering processes (default: the cores the run leaves spare)")


class Extensions(Frozen):
    """A number written with an extension ("... доб. 12", "x 12"): the main number is dialled, the extension
    sent as DTMF after the answer. Off: such a row is reported as a number that cannot be dialled."""

    dial: bool = True
    pause_s: DurationS = Field(2.0, ge=0, le=30, description="after the answer, before the extension's digits")


class Campaign(Frozen):
    name: str
    trunk: Trunk
    caller_id: str | None = None
    max_concurrent_calls: int = Field(10, ge=1, le=10000)
    calls_per_second: float = Field(1.0, gt=0, le=200)
    ring_timeout_s: DurationS = 30.0
    max_call_duration_s: DurationS = 600.0
    record_calls: bool = False  # a stereo WAV per call: the customer left, the bot right
    default_region: str = Field("US", description="ISO country code for numbers written without +country")
    calling_window: CallingWindow = Field(default_factory=CallingWindow)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    contacts: ContactsImport = Field(default_factory=ContactsImport)
    prompt_cache: PromptCacheSettings = Field(default_factory=PromptCacheSettings)
    extensions: Extensions = Field(default_factory=Extensions)
    contact_fields: Annotated[dict[str, ContactField], BeforeValidator(_contact_fields)] = Field(default_factory=dict)

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.match(r"^[A-Z]{2}$", v):
            raise ValueError(f"'{v}' is not a two-letter country code such as US, GB or RU")
        return v

    @field_validator("contact_fields")
    @classmethod
    def _field_names(cls, v: dict[str, ContactField]) -> dict[str, ContactField]:
        for name in v:
            _identifier(name, "contact field")
        return v


# --- speech and operators -------------------------------------------------------------


class TtsSettings(Frozen):
    engine: Literal["piper", "espeak"] = "piper"  # espeak: espeak-ng, for languages with no Piper voice
    voice: str = "en_US-joe-medium"
    speaker: int | None = None
    length_scale: float = Field(1.0, gt=0.3, le=3.0)


class AsrSettings(Frozen):
    engine: Literal["auto", "vosk", "pocketsphinx", "whisper"] = "auto"
    model: str | None = None


class TurnTaking(Frozen):
    """Voice activity, barge-in and end-of-turn timing (milliseconds)."""

    vad_aggressiveness: int = Field(2, ge=0, le=3)
    min_level_dbfs: float = Field(-50.0, le=0)
    speech_start_ms: int = Field(100, ge=20, le=1000)  # voiced time before speech counts as started
    speech_end_ms: int = Field(300, ge=60, le=3000)  # unvoiced time before speech counts as ended
    end_of_turn_ms: int = Field(600, ge=100, le=5000)  # silence that ends a turn
    complete_end_of_turn_ms: int = Field(240, ge=60, le=5000)  # ...when the answer already matches an intent
    max_turn_ms: int = Field(15000, ge=1000, le=120000)
    barge_in_confirm_ms: int = Field(900, ge=100, le=5000)  # words must come within this to end a prompt
    answer_tail_ms: int = Field(800, ge=0, le=5000)  # near a prompt's end any word is an answer
    backchannels: tuple[str, ...] | None = None  # words that never interrupt; default per language


class Speech(Frozen):
    language: str = "en"
    rate_hz: Literal[8000, 16000] = 8000  # the call's audio rate: 8000 for G.711 trunks
    tts: TtsSettings = Field(default_factory=TtsSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    turn_taking: TurnTaking = Field(default_factory=TurnTaking)

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$", v):
            raise ValueError(f"'{v}' is not a language code such as en, ru or en-US")
        return v

    @property
    def base_language(self) -> str:
        return self.language.split("-")[0]


class Operator(Frozen):
    """A live-operator destination, e.g. an Asterisk queue extension."""

    uri: str
    mode: Literal["transfer", "bridge"] = "transfer"
    warm: bool = False
    accept_digit: str = Field("1", pattern=r"^[0-9*#]$")
    timeout_s: DurationS = 30.0
    # Bridge mode: what the operator hears before accepting (warm), and what the customer hears meanwhile.
    # Besides contact fields and variables: {node}, {last_words}, {accept_digit}.
    briefing: str = (
        "Incoming call from {first_name|a customer} at {company|an unknown company}. "
        "They said: {last_words|nothing yet}. Press {accept_digit} to take the call."
    )
    hold: str = "Please stay on the line, I am connecting you."

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not v.startswith(("sip:", "sips:", "tel:")):
            raise ValueError(f"'{v}' is not a SIP or tel URI")
        return v

    @model_validator(mode="after")
    def _warm_needs_bridge(self) -> Operator:
        if self.warm and self.mode != "bridge":
            raise ValueError("a warm handoff needs mode: bridge (the bot must stay on both legs to brief the operator)")
        return self


# --- script -----------------------------------------------------------------------------


class Prompt(Frozen):
    """What the bot says: a text template rendered by TTS, or a recorded WAV (with its text for logs)."""

    text: str | None = None
    wav: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _something(self) -> Prompt:
        if not self.text and not self.wav:
            raise ValueError("a prompt needs text or wav")
        return self


class Voicemail(Frozen):
    """Answering-machine detection and what to do on a machine."""

    detect: bool = True
    greeting_max_ms: int = Field(2400, ge=500, le=10000)
    message: Prompt | None = None  # left after the beep; without one the bot just hangs up


class Capture(Frozen):
    """Fill a slot from what the person said."""

    slot: str
    type: Literal["text", "time", "number", "digits", "yes_no"] = "text"
    next: str | None = None  # only on a node-level capture: where to go once the slot is filled

    @field_validator("slot")
    @classmethod
    def _slot(cls, v: str) -> str:
        return _identifier(v, "slot")


Scalar = str | int | float | bool | None


class Confirm(Frozen):
    """Ask before acting on an intent heard with less than ``below`` confidence (the lower of the
    match score and the recogniser's confidence): "Just to be sure: you'd like us to stop calling you?"."""

    below: float = Field(..., gt=0, le=1)
    say: Prompt | None = None  # the question; defaults.confirm_say when not given


class IntentDef(Frozen):
    """Example phrases and keywords of an intent (reusable from ``script.intents``)."""

    phrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    threshold: float | None = Field(None, gt=0, le=1)
    priority: int = 0
    confirm: Confirm | None = None


class Route(Frozen):
    """Where an intent, DTMF key or global intent leads.

    Exactly one way on: ``next`` (a node), ``hangup`` (an outcome label) or
    ``resume`` (say the ``say`` line, then ask the current node again).
    Phrases/keywords written here add to those of the intent of the same name.
    """

    phrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    threshold: float | None = Field(None, gt=0, le=1)
    priority: int | None = None
    confirm: Confirm | None = None
    say: Prompt | None = None
    set: dict[str, Scalar] = Field(default_factory=dict)
    capture: Capture | None = None
    next: str | None = None
    hangup: str | None = None
    resume: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `yes: pitch` is short for `yes: {next: pitch}`
        return {"next": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_way_on(self) -> Route:
        ways = [w for w, on in (("next", self.next), ("hangup", self.hangup), ("resume", self.resume)) if on]
        if len(ways) != 1:
            raise ValueError(
                "a route needs exactly one way on: next (a node), hangup (an outcome) or resume: true"
                + (f"; it has {', '.join(ways)}" if ways else "")
            )
        if self.resume and not self.say:
            raise ValueError("resume: true needs a say line to answer with before asking again")
        if self.hangup:
            _identifier(self.hangup, "outcome")
        for name in self.set:
            _identifier(name, "variable")
        return self


class Fallback(Frozen):
    """What happens on silence (no input) or on an answer that matched nothing."""

    reprompt: Prompt | None = None
    max: int | None = Field(None, ge=0, le=10)
    next: str | None = None
    timeout_s: DurationS | None = None  # no-input only


class Defaults(Frozen):
    no_input_timeout_s: DurationS = 6.0
    max_no_input: int = Field(2, ge=0, le=10)
    max_no_match: int = Field(2, ge=0, le=10)
    barge_in: bool = True
    min_confidence: float = Field(0.3, ge=0, le=1)
    threshold: float = Field(0.72, gt=0, le=1)
    # An answer that would end the call (its route hangs up, here or after nodes that do not listen)
    # is confirmed first when heard with less confidence than this, whether or not its intent says so.
    confirm_below: float = Field(0.6, ge=0, le=1)
    confirm_say: Prompt = Prompt(text='Sorry, just to be sure: did you say "{heard}"?')
    no_match_reprompt: Prompt = Prompt(text="Sorry, I didn't catch that.")
    no_input_reprompt: Prompt = Prompt(text="Are you still there?")


def _dtmf_keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not _DTMF_KEY.match(str(key)):
                raise ValueError(f"'{key}' is not a DTMF key (0-9, * or #)")
        return {str(k): v for k, v in value.items()}
    return value


class Node(Frozen):
    say: Prompt | None = None
    # Keys to press (RFC 2833) after the prompt, e.g. to pass a phone menu: "1", "2#", "1,,3" (each "," waits 500 ms)
    send_dtmf: str | None = Field(None, pattern=r"^[0-9*#A-Da-d,]+$")
    reprompt: Prompt | None = None
    barge_in: bool | None = None
    set: dict[str, Scalar] = Field(default_factory=dict)
    intents: dict[str, Route] = Field(default_factory=dict)
    dtmf: Annotated[dict[str, Route], BeforeValidator(_dtmf_keys)] = Field(default_factory=dict)
    capture: Capture | None = None
    on_no_input: Fallback = Field(default_factory=Fallback)
    on_no_match: Fallback = Field(default_factory=Fallback)
    global_intents: bool | tuple[str, ...] = True
    min_confidence: float | None = Field(None, ge=0, le=1)
    next: str | None = None
    hangup: str | None = None
    transfer: str | None = None
    on_transfer_fail: str | None = None

    @property
    def listens(self) -> bool:
        return bool(self.intents or self.dtmf or self.capture)

    @model_validator(mode="after")
    def _one_kind(self) -> Node:
        kinds = [
            k for k, on in (("listens", self.listens), ("next", self.next), ("hangup", self.hangup), ("transfer", self.transfer)) if on
        ]
        if len(kinds) > 1:
            raise ValueError(
                f"a node either listens (intents/dtmf/capture), goes on (next), ends (hangup) or hands off (transfer); this one has {', '.join(kinds)}"
            )
        if self.capture and not self.capture.next:
            raise ValueError("a node-level capture needs next: the node to go to once the slot is filled")
        if not self.listens and (self.on_no_input.next or self.on_no_match.next):
            raise ValueError("on_no_input/on_no_match only apply to a node that listens")
        if self.hangup:
            _identifier(self.hangup, "outcome")
        if self.on_transfer_fail and not self.transfer:
            raise ValueError("on_transfer_fail only applies to a node with transfer")
        for name in self.set:
            _identifier(name, "variable")
        return self


class Script(Frozen):
    start: str
    variables: dict[str, str] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    fallback: str | None = None  # where exhausted no-match/no-input go when a node names nothing
    intents: dict[str, IntentDef] = Field(default_factory=dict)
    global_intents: dict[str, Route] = Field(default_factory=dict)
    nodes: dict[str, Node]

    @field_validator("nodes")
    @classmethod
    def _ids(cls, v: dict[str, Node]) -> dict[str, Node]:
        if not v:
            raise ValueError("a script needs at least one node")
        for node_id in v:
            _identifier(node_id, "node id")
        return v

    @field_validator("variables")
    @classmethod
    def _vars(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            _identifier(name, "variable")
        return v


class Dialplan(Frozen):
    version: Literal[1] = 1
    campaign: Campaign
    speech: Speech = Field(default_factory=Speech)
    operators: dict[str, Operator] = Field(default_factory=dict)
    voicemail: Voicemail = Field(default_factory=Voicemail)
    script: Script
