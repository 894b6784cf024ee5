"""Understanding: what spoken answers make the bot do, against what the same words do when typed.

Each test utterance (a node and an answer, from a file written without reading
the dialplan's phrase lists) takes two paths from the same node:

- typed: a fresh ``ScriptEngine`` started at the node is handed the text;
- spoken: the real ``CallSession`` on the simulator's virtual clock, started at
  the node, hears the answer 400 ms after its question ends, spoken by Piper
  and espeak-ng voices at 8 kHz μ-law with pink noise or babble at each SNR,
  and runs until the engine records its first turn.

Each path ends in a decision: acted on an intent (or a global, or a capture),
asked to confirm one, or reprompted (no match, low confidence, no input). The
spoken path agrees when it reprompts where the typed one reprompts, or lands on
the same intent (a confirmation of X agrees with acting on X: the person would
confirm). A wrong action is the spoken path acting, without confirming, on
anything the typed path did not act on. Synthesised audio is cached in the
working directory by text, voice and condition, so a second run only decodes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import get_args

import numpy as np
import yaml

import voicebot
from voicebot.audio.frames import NARROWBAND, split_frames, to_array
from voicebot.audio.noise import NOISES as KNOWN_NOISES
from voicebot.audio.noise import noisy_line
from voicebot.audio.resample import resample
from voicebot.bench.common import BenchError, machine, target

DATA = Path("tests/data/understanding/en_test.yaml")
DIALPLAN = Path("dialplans/demo_en.yaml")
VOICES = ("piper:en_US-joe-medium", "en-us", "en-gb", "en-us+f3")
NOISES = ("pink", "babble")
SNRS_DB = (20.0, 15.0, 10.0)
CONTACT = {"first_name": "Anna"}
# A conversation started mid-script has not filled the slots its prompts may name ("So that's
# {meeting_time}..."): the bench gives it the first value the script itself sets, or one per slot type.
_SLOT_EXAMPLES = {"time": "tomorrow at ten", "number": "3", "digits": "1234", "yes_no": "yes", "text": "something"}
REACTION_MS = 400
MAX_CALL_MS = 120_000  # virtual; a call stops at its first turn, long before
WORST = 30
DATA_NOTE = "phrasings written independently of the dialplan's phrase lists (from the intents' meanings only) and never tuned on"
# Babble: talkers unlike the test voices, reading sentences unrelated to the script (Harvard sentences).
BABBLE = (
    (
        "en-gb-scotland",
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
        "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    ),
    (
        "en-us+m3",
        "Rice is often served in round bowls. The juice of lemons makes fine punch. "
        "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.",
    ),
    (
        "en-gb-x-rp+f2",
        "Four hours of steady work faced us. A large size in stockings is hard to sell. "
        "The boy was there when the sun rose. A rod is used to catch pink salmon.",
    ),
    (
        "en-029+f4",
        "The source of the huge river is the clear spring. Kick the ball straight and follow through. "
        "Help the woman get back to her feet. A pot of tea helps to pass the evening.",
    ),
    (
        "en-us-nyc+m5",
        "Smoky fires lack flame and heat. The soft cushion broke the man's fall. "
        "The salt breeze came across from the sea. The girl at the booth sold fifty bonds.",
    ),
)

ACTED, CONFIRM, REPROMPT = "acted", "confirm", "reprompt"
_KINDS = {"intent": ACTED, "global": ACTED, "capture": ACTED, "confirm": CONFIRM}  # the rest: a reprompt


@dataclass(frozen=True)
class UnderstandingOptions:
    workdir: Path
    data: Path | None = None  # default: DATA in the repository (or the current directory)
    dialplan: Path | None = None  # default: DIALPLAN likewise
    voices: tuple[str, ...] = VOICES
    noises: tuple[str, ...] = NOISES
    snrs_db: tuple[float, ...] = SNRS_DB
    limit: int | None = None  # utterances, evenly spread over the file
    engine: str | None = None  # ASR engine instead of the dialplan's (e.g. pocketsphinx)


@dataclass(frozen=True)
class Utterance:
    node: str
    text: str
    expect: str  # an intent, or "none" (a reprompt)


@dataclass(frozen=True)
class Decision:
    """What the engine did with the person's first turn at the node."""

    kind: str  # acted | confirm | reprompt
    intent: str | None
    node: str  # where the conversation went
    result: str  # the engine's Turn.result (intent, global, capture, confirm, no_match, low_confidence, no_input)

    def __str__(self) -> str:
        if self.kind == REPROMPT:
            return f"reprompt ({self.result})"
        what = self.intent or self.result
        return f"confirm {what}" if self.kind == CONFIRM else f"{what} → {self.node}"


def decision_of(result: str, intent: str | None, node: str) -> Decision:
    return Decision(_KINDS.get(result, REPROMPT), intent, node, result)


def agree(typed: Decision, spoken: Decision) -> bool:
    """Both reprompt, or both go to the same node (confirming X agrees with acting on X)."""
    if REPROMPT in (typed.kind, spoken.kind):
        return typed.kind == spoken.kind
    if typed.kind == spoken.kind == ACTED:
        # the path is what matters: "no" and "no thanks" may be two intents that lead to one node
        return typed.node == spoken.node
    return typed.intent == spoken.intent


def wrong_action(typed: Decision, spoken: Decision) -> bool:
    """The spoken path acted, without confirming, on something the typed path did not act on."""
    return spoken.kind == ACTED and not agree(typed, spoken)


def lost_to_reprompt(typed: Decision, spoken: Decision) -> bool:
    return spoken.kind == REPROMPT and typed.kind != REPROMPT


def meets_expectation(typed: Decision, expect: str) -> bool:
    return typed.kind == REPROMPT if expect == "none" else typed.kind != REPROMPT and typed.intent == expect


# --- data -----------------------------------------------------------------------------------


def find_file(given: Path | None, default: Path, what: str, flag: str) -> Path:
    """``given``, or ``default`` relative to the repository the package runs from, or to the current directory."""
    if given is not None:
        if not given.is_file():
            raise BenchError(f"{what} {given} does not exist")
        return given
    places = [Path(voicebot.__file__).resolve().parent.parent / default, Path.cwd() / default]
    for place in places:
        if place.is_file():
            return place
    raise BenchError(
        f"no {what}: neither {places[0]} (beside the package) nor {places[1]} (the current directory) exists; pass {flag} FILE"
    )


def load_utterances(path: Path, graph) -> list[Utterance]:  # noqa: ANN001 - a ScriptGraph
    """The test file: a YAML list of {node, text, expect}; every node must listen and every expect be
    "none" or an intent that node routes."""
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{path}: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise BenchError(f"{path}: expected a YAML list of {{node, text, expect}}")
    out, problems = [], []
    for i, item in enumerate(items, start=1):
        where = f"{path} item {i}"
        if not isinstance(item, dict) or not {"node", "text", "expect"} <= set(item):
            problems.append(f"{where}: needs node, text and expect")
            continue
        u = Utterance(str(item["node"]), str(item["text"]), str(item["expect"]))
        node = graph.nodes.get(u.node)
        if node is None or not node.listens:
            problems.append(f"{where}: '{u.node}' is not a node that listens in the dialplan")
        elif u.expect != "none" and u.expect not in node.routes and u.expect not in node.global_routes:
            problems.append(f"{where}: node '{u.node}' has no intent '{u.expect}' (write \"none\" for a reprompt)")
        else:
            out.append(u)
    if problems:
        raise BenchError(f"{path}: {len(problems)} bad item(s)\n" + "\n".join(problems))
    return out


def spread(items: Sequence, limit: int | None) -> list:
    """``limit`` items evenly spaced over the list (all of them without a limit), so every part of the file shows."""
    if limit is None or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- audio ----------------------------------------------------------------------------------


class AudioSet:
    """Test answers as 8 kHz PCM, synthesised once and kept in ``root`` by text, voice and condition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = self.reused = 0
        self._talkers: list[np.ndarray] | None = None

    def clean(self, text: str, voice: str) -> bytes:
        from voicebot.peers.customer import speak

        return self._cached("clean", (text, voice), lambda: b"".join(speak(text, NARROWBAND, voice, snr_db=None)))

    def talkers(self) -> list[np.ndarray]:
        if self._talkers is None:
            self._talkers = [to_array(self.clean(text, voice)).astype(np.float64) for voice, text in BABBLE]
        return self._talkers

    def line(self, text: str, voice: str, noise: str, snr_db: float) -> bytes:
        """Over the line: ``noise`` at ``snr_db`` below the speech, G.711 μ-law. One noise segment per
        (text, voice, noise) whatever the SNR, so conditions differ only in level."""
        seed = zlib.crc32(f"{text}\0{voice}\0{noise}".encode())

        def make() -> bytes:
            talkers = self.talkers() if noise == "babble" else ()
            return noisy_line(self.clean(text, voice), noise, snr_db, seed, talkers)

        return self._cached(f"{noise}-{snr_db:g}dB", (text, voice), make)

    def _cached(self, condition: str, key: tuple[str, ...], make: Callable[[], bytes]) -> bytes:
        digest = hashlib.sha256("\0".join((condition, *key)).encode()).hexdigest()[:24]
        path = self.root / condition / f"{digest}.pcm"
        if path.is_file():
            self.reused += 1
            return path.read_bytes()
        pcm = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pcm)
        tmp.replace(path)
        self.made += 1
        return pcm


# --- the two paths --------------------------------------------------------------------------


def contact_for(graph) -> dict[str, object]:  # noqa: ANN001 - a ScriptGraph
    """CONTACT plus a value for every variable or slot the script fills on the way, so that any node's
    prompts render when a conversation starts there."""
    values: dict[str, object] = {}
    for cn in graph.nodes.values():
        values.update({k: v for k, v in cn.node.set.items() if k not in values})
        captures = [cn.node.capture] if cn.node.capture else []
        for route in (*cn.routes.values(), *cn.global_routes.values()):
            values.update({k: v for k, v in route.set.items() if k not in values})
            captures += [route.capture] if route.capture else []
        for c in captures:
            values.setdefault(c.slot, _SLOT_EXAMPLES.get(c.type, "something"))
    return {**values, **CONTACT}


def typed_decision(graph, u: Utterance, contact: dict[str, object]) -> Decision:  # noqa: ANN001 - a ScriptGraph
    from voicebot.script.engine import Heard, ScriptEngine

    engine = ScriptEngine(graph, contact)
    engine.start(at=u.node)
    engine.handle(Heard(u.text, 1.0))
    return _first_decision(engine, u.node)


def _first_decision(engine, start: str) -> Decision:  # noqa: ANN001 - a ScriptEngine
    if not engine.turns:  # the call ran out before the person's turn was decided
        return decision_of("no_turn", None, start)
    turn = engine.turns[0]
    return decision_of(turn.result, turn.intent, engine.path[-1])


@dataclass
class AsrTime:
    """CPU (process_time) and wall time spent inside one call's ASR stream."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    # what the recogniser returned last at a peek or a turn's end: its text, confidence and hints (for
    # reading why an answer went wrong, e.g. which confidences the misheard ones had)
    last: dict | None = None


class TimedStream:
    """An ``AsrStream`` that adds the time spent in each of its calls to an ``AsrTime``."""

    def __init__(self, inner, spent: AsrTime) -> None:  # noqa: ANN001 - an AsrStream
        self._inner = inner
        self._spent = spent
        self.rate_hz = inner.rate_hz
        for name in ("push", "peek", "flush", "reset", "set_vocabulary", "want_hints"):
            if hasattr(inner, name):
                setattr(self, name, self._timed(getattr(inner, name), keep=name in ("peek", "flush")))

    def _timed(self, call: Callable, keep: bool = False) -> Callable:
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                result = call(*args, **kwargs)
            finally:
                self._spent.cpu_s += time.process_time() - cpu
                self._spent.wall_s += time.perf_counter() - wall
            if keep and (result.text or result.alternatives):
                self._spent.last = {"text": result.text, "confidence": result.confidence, "hints": [list(a) for a in result.alternatives]}
            if keep and result.second_opinion is not None:
                # decoded later, inside the script engine, when it needs one: its time is the recogniser's too
                result = replace(result, second_opinion=self._timed_opinion(result.second_opinion))
            return result

        return timed

    def _timed_opinion(self, decode: Callable) -> Callable:
        def timed():  # noqa: ANN202
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                alternatives = decode()
            finally:
                self._spent.cpu_s += time.process_time() - cpu
                self._spent.wall_s += time.perf_counter() - wall
            if self._spent.last is not None:
                self._spent.last = {**self._spent.last, "hints": [list(a) for a in alternatives]}
            return alternatives

        return timed


@dataclass
class SpokenPath:
    """Everything a simulated call needs, built once per run."""

    graph: object
    asr: object  # an AsrEngine
    prompts: object  # a PromptSource
    settings: object  # SessionSettings
    contact: dict[str, object]

    def decide(self, u: Utterance, pcm_8k: bytes) -> tuple[Decision, str, AsrTime]:
        from voicebot.session import CallSession
        from voicebot.simulate import CallSimulator, CustomerAudio

        fmt = self.settings.fmt
        frames = list(split_frames(resample(pcm_8k, NARROWBAND.rate_hz, fmt.rate_hz), fmt))
        spent = AsrTime()
        session = CallSession(self.graph, TimedStream(self.asr.stream(fmt.rate_hz), spent), self.prompts, self.contact, self.settings)
        sim = CallSimulator(fmt, [CustomerAudio(frames, REACTION_MS, "listening", u.text)])
        sim.run(session, MAX_CALL_MS, at=u.node, until=lambda: bool(session.engine.turns))
        heard = session.engine.turns[0].text if session.engine.turns else ""
        return _first_decision(session.engine, u.node), heard, spent


def spoken_path(graph, engine_name: str | None, prompt_dir: Path, contact: dict[str, object]) -> SpokenPath:  # noqa: ANN001
    """The dialplan's recogniser (or ``engine_name``'s), its prompts cached in ``prompt_dir``, and the
    session settings of a call with answering-machine detection off (answers come mid-call)."""
    from pydantic import ValidationError

    from voicebot.config import AsrSettings
    from voicebot.errors import VoicebotError
    from voicebot.session import SessionSettings
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.select import make_asr_engine
    from voicebot.speech.tts import make_tts

    speech = graph.dialplan.speech
    settings = speech.asr
    if engine_name:
        try:
            settings = AsrSettings.model_validate({"engine": engine_name})
        except ValidationError as exc:
            choices = get_args(AsrSettings.model_fields["engine"].annotation)
            raise BenchError(f"--engine {engine_name}: not an ASR engine ({', '.join(choices)})") from exc
    try:
        asr = make_asr_engine(settings, speech.language)
        prompts = PromptCache(prompt_dir, make_tts(speech.tts, speech.language, None))
    except VoicebotError as exc:
        raise BenchError(f"cannot build the call's speech engines: {exc}") from exc
    return SpokenPath(graph, asr, prompts, replace(SessionSettings.from_dialplan(graph), detect_voicemail=False), contact)


# --- counting -------------------------------------------------------------------------------


@dataclass
class Row:
    voice: str
    noise: str
    snr_db: float
    utterance: Utterance
    typed: Decision
    spoken: Decision
    heard: str
    audio_s: float
    asr: AsrTime = field(default_factory=AsrTime)

    @property
    def agree(self) -> bool:
        return agree(self.typed, self.spoken)

    @property
    def wrong_action(self) -> bool:
        return wrong_action(self.typed, self.spoken)

    @property
    def severity(self) -> int:
        if self.wrong_action:
            return 3
        if self.spoken.kind == CONFIRM and not self.agree:
            return 2  # caught by the confirmation
        return 0 if self.agree else 1

    def example(self) -> dict:
        u = self.utterance
        return {
            "said": u.text,
            "heard": self.heard,
            "node": u.node,
            "typed": str(self.typed),
            "spoken": str(self.spoken),
            "voice": self.voice,
            "noise": self.noise,
            "snr_db": self.snr_db,
            "wrong_action": self.wrong_action,
        }


def _share(count: int, n: int) -> float | None:
    return round(count / n, 3) if n else None


def rates(rows: Sequence[Row]) -> dict:
    """The counts of one slice of the runs; every share is over all its utterances."""
    n = len(rows)
    audio_s = sum(r.audio_s for r in rows)
    cpu_s = sum(r.asr.cpu_s for r in rows)
    wall_s = sum(r.asr.wall_s for r in rows)
    return {
        "n": n,
        "agreement": _share(sum(r.agree for r in rows), n),
        "wrong_action": _share(sum(r.wrong_action for r in rows), n),
        "no_match_rate": _share(sum(lost_to_reprompt(r.typed, r.spoken) for r in rows), n),
        "confirmations": _share(sum(r.spoken.kind == CONFIRM for r in rows), n),
        "confirmed_other_intent": _share(sum(r.spoken.kind == CONFIRM and not r.agree for r in rows), n),
        "asr_cpu_s_per_audio_s": round(cpu_s / audio_s, 4) if audio_s else None,
        "rtf": round(wall_s / audio_s, 4) if audio_s else None,
    }


def _grouped(rows: Iterable[Row], key: Callable[[Row], str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def by_snr(rows: Sequence[Row]) -> dict:
    out = {}
    for snr, group in _grouped(rows, lambda r: f"{r.snr_db:g}").items():
        out[snr] = {
            **rates(group),
            "by_noise": {k: rates(g) for k, g in _grouped(group, lambda r: r.noise).items()},
            "by_voice": {k: rates(g) for k, g in _grouped(group, lambda r: r.voice).items()},
        }
    return out


def worst(rows: Sequence[Row], limit: int = WORST) -> list[dict]:
    """The worst disagreements: wrong actions first (at the cleanest SNR first), then wrong intents
    caught by a confirmation, then answers lost to a reprompt; one per answer and spoken decision."""
    bad = sorted((r for r in rows if r.severity), key=lambda r: (-r.severity, -r.snr_db, r.utterance.text, r.voice, r.noise))
    seen, out = set(), []
    for r in bad:
        key = (r.utterance.text, r.spoken)
        if key not in seen:
            seen.add(key)
            out.append(r.example())
        if len(out) >= limit:
            break
    return out


def targets(snrs: dict) -> dict:
    def at(snr: float, what: str, goal: str, ok: Callable[[float], bool]) -> dict:
        measured = snrs.get(f"{snr:g}", {}).get(what)
        return target(
            goal,
            measured,
            None if measured is None else ok(measured),
            "" if measured is not None else f"{snr:g} dB was not measured (--snr)",
        )

    return {
        "wrong_action_20db": at(20, "wrong_action", "≤ 3 % wrong actions at 20 dB SNR", lambda v: v <= 0.03),
        "wrong_action_10db": at(10, "wrong_action", "≤ 5 % wrong actions at 10 dB SNR", lambda v: v <= 0.05),
        "agreement_20db": at(20, "agreement", "≥ 85 % agreement with the typed path at 20 dB SNR", lambda v: v >= 0.85),
        "agreement_10db": at(10, "agreement", "≥ 75 % agreement with the typed path at 10 dB SNR", lambda v: v >= 0.75),
    }


# --- the run --------------------------------------------------------------------------------


def run(opts: UnderstandingOptions) -> dict:
    from voicebot.dialplan import load_dialplan

    unknown = sorted(set(opts.noises) - set(KNOWN_NOISES))
    if unknown:
        raise BenchError(f"unknown noise {', '.join(unknown)}: one of {', '.join(KNOWN_NOISES)}")
    data_path = find_file(opts.data, DATA, "test utterance file", "--data")
    dialplan_path = find_file(opts.dialplan, DIALPLAN, "dialplan", "--dialplan")
    graph = load_dialplan(dialplan_path).graph
    in_file = load_utterances(data_path, graph)
    utterances = spread(in_file, opts.limit)

    contact = contact_for(graph)
    typed = {u: typed_decision(graph, u, contact) for u in utterances}
    typed_ok = [u for u in utterances if meets_expectation(typed[u], u.expect)]

    audio = AudioSet(opts.workdir / "audio")
    started = time.perf_counter()
    spoken = spoken_path(graph, opts.engine, opts.workdir / "prompts", contact)
    load_s = time.perf_counter() - started
    rows: list[Row] = []
    for voice in opts.voices:
        for noise in opts.noises:
            for snr in opts.snrs_db:
                for u in utterances:
                    pcm = audio.line(u.text, voice, noise, snr)
                    decision, heard, spent = spoken.decide(u, pcm)
                    rows.append(Row(voice, noise, snr, u, typed[u], decision, heard, len(pcm) / 2 / NARROWBAND.rate_hz, spent))

    records = opts.workdir / "understanding.jsonl"
    with records.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({**asdict(r), "agree": r.agree, "wrong_action": r.wrong_action}, ensure_ascii=False) + "\n")

    snrs = by_snr(rows)
    overall = rates(rows)
    engine_name = getattr(spoken.asr, "name", type(spoken.asr).__name__)
    return {
        "benchmark": "understanding",
        "machine": machine(),
        "data": {
            "path": str(data_path),
            "sha256": sha256_of(data_path),
            "note": DATA_NOTE,
            "utterances_in_file": len(in_file),
            "utterances_used": len(utterances),
            "selection": "all" if len(utterances) == len(in_file) else f"{len(utterances)} evenly spaced (--limit)",
        },
        "dialplan": str(dialplan_path),
        "asr_engine": engine_name,
        "speech_load_s": round(load_s, 2),  # the recogniser and the prompts' TTS
        "voices": list(opts.voices),
        "noises": list(opts.noises),
        "snrs_db": list(opts.snrs_db),
        "method": {
            "typed": "a fresh ScriptEngine started at the node, handed the text (confidence 1.0)",
            "contact": contact,
            "spoken": (
                f"the real CallSession on the simulator's virtual clock, started at the node, answer played "
                f"{REACTION_MS} ms after the question ends, until the engine records its first turn; "
                "answering-machine detection off"
            ),
            "audio": (
                "Piper and espeak-ng voices at 8 kHz; pink noise (1/f) or babble (5 espeak-ng talkers reading "
                "unrelated sentences) at the SNR below the speech's active-level RMS; G.711 μ-law"
            ),
            "decision": "acted (intent, global, capture) | confirm | reprompt (no_match, low_confidence, no_input)",
            "agreement": (
                'both reprompt, or both acted and went to the same node ("no" and "no thanks" may be two intents '
                'with one path; a time captured instead of "the second option" reaches the same node), or a '
                "confirmation of the intent the typed path acted on or confirmed"
            ),
            "wrong_action": "spoken acted without confirming, and went to another node than the typed path",
            "no_match_rate": "spoken reprompted where typed acted or confirmed; every share is over all utterances of its slice",
            "cpu": (
                "time.process_time() (CPU of the whole process, all threads) around the ASR stream's push, peek, flush, "
                "reset and set_vocabulary calls, per second of answer audio; rtf: wall time of the same calls per second"
            ),
        },
        "typed": {
            "n": len(utterances),
            "accuracy": _share(len(typed_ok), len(utterances)),
            "note": 'how often the typed path does what the file expects ("none": a reprompt); reported apart from agreement',
            "misses": [
                {"said": u.text, "node": u.node, "expect": u.expect, "typed": str(typed[u])} for u in utterances if u not in typed_ok
            ][:WORST],
        },
        "overall": overall,
        "by_snr": snrs,
        "worst": worst(rows),
        "audio_cache": {"dir": str(audio.root), "synthesised": audio.made, "reused": audio.reused},
        "records": str(records),
        "summary": _summary(snrs, overall, engine_name, _share(len(typed_ok), len(utterances))),
        "targets": targets(snrs),
    }


def _summary(snrs: dict, overall: dict, engine_name: str, typed_accuracy: float | None) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    parts = [
        f"{snr} dB: agree {pct(r['agreement'])}, wrong {pct(r['wrong_action'])}, reprompt {pct(r['no_match_rate'])}"
        for snr, r in snrs.items()
    ]
    cpu = overall["asr_cpu_s_per_audio_s"]
    return (
        f"{engine_name}: " + "; ".join(parts) + f"; typed accuracy {pct(typed_accuracy)}; "
        f"ASR CPU {'-' if cpu is None or math.isnan(cpu) else f'{cpu:.3f}'} s per s of speech"
    )
