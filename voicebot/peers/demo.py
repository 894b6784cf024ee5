"""`make demo`: a real campaign on this machine against a simulated PBX of customers.

Each contact in the demo's contacts file names a persona: how that person
behaves when called (books a meeting, objects, wants a callback, asks for a
human, has voicemail, is busy, never answers, does not exist...). This module
turns personas into a PBX on 127.0.0.1:

- a stateless SIP router on the dialplan's trunk port (``voicebot.peers.pbx``):
  busy numbers get 486 from it, unknown numbers 404, the rest go to
- one baresip with an account per number, each playing its persona's answers
  (laid out where the bot will listen by rehearsing the call on the simulator's
  clock), and the operator's account, where handoffs are transferred.

Then it runs ``voicebot run`` on the dialplan and the contacts, and prints the
outcomes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio.frames import NARROWBAND, write_wav
from voicebot.campaign.contacts import load_contacts
from voicebot.dialplan import load_dialplan
from voicebot.peers.baresip import Account, BaresipPeer
from voicebot.peers.customer import script_customer, speak
from voicebot.peers.pbx import SipRouter


@dataclass(frozen=True)
class Persona:
    answers: tuple[str, ...] = ()  # what the person says, turn by turn
    expect: str = ""  # the outcome the demo expects
    answer_call: bool = True
    busy: bool = False
    exists: bool = True
    recording: str = ""  # instead of answers: play this (a voicemail greeting), then a beep
    hang_up_after_s: float | None = None  # a silent person who hangs up
    voice: str = "en-us"  # espeak-ng, or "piper:<voice>"


# An answer that ends the call is confirmed when it was heard with little confidence ("Just to be
# sure: ...?"): such personas say "yes" once more, which is never played when the bot did not ask.
PERSONAS: dict[str, Persona] = {
    "interested": Persona(("yes sure", "we keep them in a spreadsheet", "yes", "tuesday", "yes", "yes"), "meeting_booked"),
    "callback": Persona(("i am busy right now", "tomorrow at three"), "callback", voice="piper:en_US-joe-medium"),
    "objection": Persona(("we already have a solution", "no", "yes"), "not_interested"),
    "send_info": Persona(("just send me an email", "email is enough", "yes"), "send_info", voice="piper:en_US-joe-medium"),
    "buying": Persona(("how much does it cost",), "handoff"),
    "human": Persona(("connect me to a manager",), "handoff"),
    "dnc": Persona(("take me off your list", "yes"), "dnc"),
    "hangs_up": Persona(expect="customer_hangup", hang_up_after_s=4.0),
    "voicemail": Persona(
        expect="voicemail",
        recording=(
            "Hi, you have reached the voicemail of Robert Miller at Contoso. "
            "I cannot take your call right now. Please leave a message after the tone."
        ),
    ),
    "busy": Persona(expect="busy", busy=True),
    "no_answer": Persona(expect="no_answer", answer_call=False),
    "invalid": Persona(expect="invalid_number", exists=False),
}
OPERATOR_GREETING = "Hello, this is Sam from the sales team. How can I help you?"


def _beep(seconds: float = 0.6, hz: float = 1000.0) -> bytes:
    import numpy as np

    t = np.arange(int(NARROWBAND.rate_hz * seconds)) / NARROWBAND.rate_hz
    return (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _silence(seconds: float) -> bytes:
    return bytes(int(NARROWBAND.rate_hz * seconds) * 2)


def customer_tracks(dialplan: Path, prompts: Path, folder: Path, contacts: dict[str, dict[str, str]]) -> dict[str, Path]:
    """One WAV per contact (key: its number) from its persona, rehearsed against the dialplan with that
    contact's own fields: a personalised prompt's length decides where the next answer must fall."""
    from voicebot.apps import recipe

    loaded = load_dialplan(dialplan)
    cache = recipe.prompt_cache(loaded, prompts)
    asr = recipe.asr_engine(loaded)
    folder.mkdir(parents=True, exist_ok=True)
    tracks = {}
    for number, fields in contacts.items():
        persona = PERSONAS[fields["persona"]]
        path = folder / f"{number.lstrip('+')}.wav"
        if persona.recording:
            greeting = b"".join(speak(persona.recording, NARROWBAND, snr_db=None))
            write_wav(path, _silence(0.5) + greeting + _silence(0.4) + _beep() + _silence(20), NARROWBAND.rate_hz)
        elif persona.hang_up_after_s is not None:
            write_wav(path, _silence(persona.hang_up_after_s), NARROWBAND.rate_hz)  # baresip hangs up when it ends
        elif persona.answers:
            # over a simulated line (μ-law, noise 25 dB down), as a caller sounds
            frames = [speak(text, NARROWBAND, voice=persona.voice, snr_db=25.0, seed=i) for i, text in enumerate(persona.answers)]
            session = recipe.call_session(loaded, asr, cache, fields, NARROWBAND.rate_hz)
            # 2.5 s after each prompt: room for the real call's compute and load (the rehearsal's clock has none)
            track = script_customer(session, frames, reaction_ms=2500, tail_ms=30_000)
            track.write(path, NARROWBAND.rate_hz)
            if track.rehearsal.outcome != persona.expect:  # the recogniser misheard even the rehearsal
                heard = [t["text"] for t in track.rehearsal.turns]
                print(f"  {number} ({fields['persona']}): the rehearsal ended {track.rehearsal.outcome}, heard {heard}", flush=True)
        else:
            continue
        tracks[number] = path
    return tracks


def _trunk_port(uri_template: str) -> int:
    m = re.search(r"@127\.0\.0\.1:(\d+)", uri_template)
    if m is None:
        raise SystemExit(
            f"the demo PBX runs on 127.0.0.1: the trunk's uri_template must be sip:{{number}}@127.0.0.1:PORT (is {uri_template})"
        )
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voicebot.peers.demo", description=__doc__.splitlines()[0])
    p.add_argument("dialplan", type=Path)
    p.add_argument("contacts", type=Path)
    p.add_argument("--out", type=Path, default=Path("build/demo/campaign"))
    p.add_argument("--concurrency", type=int, default=8, help="calls at once (this box has 2 cores)")
    args = p.parse_args(argv)

    loaded = load_dialplan(args.dialplan)
    campaign = loaded.dialplan.campaign
    imported = load_contacts(args.contacts, campaign.contacts, campaign.default_region, campaign.contact_fields)
    if imported.problems:
        for problem in imported.problems:
            print(problem, file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "campaign.db"
    for stale in args.out.glob("campaign*"):  # a demo starts from scratch every time
        if stale.is_file():
            stale.unlink()
    prompts = args.out / "campaign.prompts"
    for contact in imported.contacts:
        persona = contact.fields.get("persona", "")
        if persona not in PERSONAS:
            raise SystemExit(f"{args.contacts}:{contact.row}: unknown persona '{persona}' (known: {', '.join(PERSONAS)})")
    print(f"rehearsing {len(imported.contacts)} customers' answers against {args.dialplan} ...", flush=True)
    tracks = customer_tracks(args.dialplan, prompts, args.out / "customers", {c.phone: c.fields for c in imported.contacts})

    operator = next(iter(loaded.dialplan.operators.values()), None)
    operator_user = operator.uri.split(":", 1)[1].split("@", 1)[0] if operator else "600"
    operator_port = int(operator.uri.rsplit(":", 1)[1].split(";")[0]) if operator else 5090
    operator_wav = args.out / "customers" / "operator.wav"
    write_wav(operator_wav, b"".join(speak(OPERATOR_GREETING, NARROWBAND, voice="en-gb", snr_db=None)) + _silence(30), NARROWBAND.rate_hz)

    accounts, routes, busy = [Account(operator_user, operator_wav)], set(), set()
    for contact in imported.contacts:
        persona = PERSONAS[contact.fields["persona"]]
        user = contact.phone  # the trunk dials the E.164 number as the user part
        if persona.busy:
            busy.add(user)
        elif persona.exists:
            routes.add(user)
            accounts.append(Account(user, tracks.get(contact.phone), answer=persona.answer_call))
    customers = BaresipPeer("customers", args.out / "pbx", operator_wav, sip_port=operator_port, accounts=tuple(accounts))
    router = SipRouter(("127.0.0.1", operator_port), routes=routes, busy=busy, port=_trunk_port(campaign.trunk.uri_template))
    started = time.monotonic()
    with customers, router:
        print(
            f"simulated PBX: router on 127.0.0.1:{router.port}, {len(accounts) - 1} customers and the operator "
            f"({operator.uri if operator else ''}) on baresip 127.0.0.1:{customers.sip_port}",
            flush=True,
        )
        cmd = [
            sys.executable,
            "-m",
            "voicebot.cli",
            "run",
            str(args.dialplan),
            "--contacts",
            str(args.contacts),
            "--db",
            str(db),
            "--until-idle",
            "--ignore-calling-window",
            "--concurrency",
            str(args.concurrency),
        ]
        code = subprocess.call(cmd)
    if code != 0:
        return code
    return report(db, imported.contacts, time.monotonic() - started)


def report(db: Path, contacts: list, seconds: float) -> int:
    """Expected vs actual outcome per persona, from the store's export."""
    from rich.console import Console
    from rich.table import Table

    from voicebot.campaign.store import CampaignStore

    persona_of = {c.phone: c.fields["persona"] for c in contacts}
    with CampaignStore.open_readonly(db) as store:
        rows = list(store.export_rows())
    outcomes: dict[str, Counter] = {}
    for row in rows:
        outcomes.setdefault(persona_of.get(row["phone"], "?"), Counter())[row["outcome"] or row["state"]] += 1
    table = Table(title=f"demo campaign: {len(rows)} calls in {seconds:.0f} s")
    for column in ("persona", "expected", "got"):
        table.add_column(column)
    missing = []
    for persona, spec in PERSONAS.items():
        got = outcomes.get(persona, Counter())
        table.add_row(persona, spec.expect, ", ".join(f"{k} ×{v}" for k, v in got.most_common()))
        if spec.expect not in got:
            missing.append(persona)
    console = Console()
    console.print(table)
    kinds = Counter(k for c in outcomes.values() for k in c.elements())
    console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    print(f"results: voicebot export {db} --csv results.csv; recordings in {db.with_suffix('.calls')}")
    if missing:
        console.print(f"[yellow]not as expected this time: {', '.join(missing)} (speech recognition over the phone is not perfect)[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
