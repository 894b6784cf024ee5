"""One call as a manager reads it: outcome, path, who said what when, and the recording."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voicebot.report.source import CallRow


@dataclass(frozen=True)
class Line:
    at_ms: int | None  # from the answer; None when the record has no timings
    speaker: str  # bot | customer | call
    text: str
    note: str = ""  # what the engine made of it, or what happened to the prompt


@dataclass(frozen=True)
class CallView:
    attempt_id: str
    phone: str
    tags: tuple[str, ...]
    started_at: float
    outcome: str
    sip_code: int | None
    talk_s: float
    path: tuple[str, ...]
    lines: tuple[Line, ...]
    recording: str | None  # as stored: the path the run wrote
    handoff: str


def call_view(call: CallRow) -> CallView:
    return CallView(
        attempt_id=call.attempt_id,
        phone=call.phone,
        tags=call.tags,
        started_at=call.started_at,
        outcome=call.outcome or call.state,
        sip_code=call.sip_code,
        talk_s=call.talk_ms / 1000,
        path=call.path,
        lines=tuple(transcript_lines(call)),
        recording=call.recording,
        handoff=call.handoff,
    )


def recording_href(recording: str, db: Path) -> str:
    """A link the report can use: relative paths in the store are relative to where the run
    was started, which is unknown here, so they are taken relative to the store's folder."""
    path = Path(recording)
    if not path.is_absolute():
        path = db.resolve().parent / path
    return path.as_uri()


def transcript_lines(call: CallRow) -> list[Line]:
    """The transcript with timings from the call's record: bot prompts when they started,
    the person's words when they ended, silences and keys when they were noticed."""
    record = call.record
    if not record or not record.get("events"):
        return [Line(None, t.get("speaker", "?"), str(t.get("text", ""))) for t in call.transcript]
    notes = _decision_notes(record.get("decisions") or [])
    heard = iter(notes["heard"])
    silences = iter(notes["silence"])
    keys = iter(notes["dtmf"])
    played = {(p.get("prompt_id"), p.get("ts_ms")): p for p in record.get("prompts", [])}
    lines: list[tuple[int, int, Line]] = []  # (time, order, line): stable for equal times
    for e in record.get("events", []):
        kind, ts = e.get("type"), int(e.get("ts_ms", 0))
        if kind == "BotSaid":
            lines.append((ts, len(lines), Line(ts, "bot", e.get("text") or f"[{e.get('prompt_id')}]", _prompt_note(e, played))))
        elif kind == "NoInput":
            lines.append((ts, len(lines), Line(ts, "customer", "(silence)", next(silences, "no input"))))
        elif kind == "KeysPressed":
            lines.append((ts, len(lines), Line(ts, "customer", f"[DTMF {e.get('digits', '')}]", next(keys, ""))))
        elif kind == "AmdVerdict":
            lines.append((ts, len(lines), Line(ts, "call", f"answering machine check: {e.get('kind')} ({e.get('reason')})")))
        elif kind == "HandoffStarted":
            lines.append((ts, len(lines), Line(ts, "call", f"handoff to {e.get('operator')} ({e.get('mode')})")))
        elif kind == "HandoffEnded":
            how = "answered" if e.get("ok") else f"failed: {e.get('reason') or 'no reason given'}"
            lines.append((ts, len(lines), Line(ts, "call", f"handoff {how}")))
    for t in record.get("turns", []):
        ts = int(t.get("speech_end_ms") or t.get("decision_ms") or 0)
        note = next(heard, "")
        if t.get("confidence") is not None:
            note = f"{note}, confidence {t['confidence']:.2f}" if note else f"confidence {t['confidence']:.2f}"
        lines.append((ts, len(lines), Line(ts, "customer", str(t.get("text", "")), note)))
    return [line for _, _, line in sorted(lines, key=lambda x: (x[0], x[1]))]


def _prompt_note(event: dict, played: dict) -> str:
    prompt = next(
        (p for (pid, _), p in played.items() if pid == event.get("prompt_id") and p.get("ts_ms", 0) >= event.get("ts_ms", 0)), None
    )
    if prompt and prompt.get("interrupted"):
        return f"interrupted after {prompt.get('played_ms', 0) / 1000:.1f} s"
    return ""


def _decision_notes(decisions: list[dict]) -> dict[str, list[str]]:
    """What the engine made of each answer, per kind, in order (the record's turns hold only
    what was heard, so heard decisions pair with them one by one)."""
    notes: dict[str, list[str]] = {"heard": [], "silence": [], "dtmf": []}
    for d in decisions:
        kind = d.get("kind")
        if kind not in notes:
            continue
        result = d.get("result", "")
        if result in ("intent", "global"):
            score = f" {d['score']:.2f}" if d.get("score") is not None else ""
            note = f"{'global ' if result == 'global' else ''}intent {d.get('intent')}{score}"
        else:
            note = result.replace("_", " ")
        notes[kind].append(note)
    return notes
