"""The `voicebot` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from voicebot.dialplan import LoadedDialplan, check_dialplan, load_dialplan
from voicebot.errors import ConfigError, VoicebotError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except VoicebotError as exc:
        print(f"error [{exc.code}]: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicebot", description="Outbound voice-bot dialer")
    sub = p.add_subparsers(metavar="COMMAND")

    v = sub.add_parser("validate", help="check dialplan files and print every problem")
    v.add_argument("files", nargs="+", type=Path)
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("chat", help="talk to a script in text (interactive, or lines from stdin)")
    c.add_argument("dialplan", type=Path)
    c.add_argument("--contact", action="append", default=[], metavar="FIELD=VALUE", help="a contact field (repeatable)")
    c.add_argument("--transfer-fail", action="store_true", help="make handoffs to operators fail")
    c.add_argument("--scores", action="store_true", help="show the intent scores of every answer")
    c.set_defaults(func=cmd_chat)

    t = sub.add_parser("test-script", help="run script tests (conversations with expected paths)")
    t.add_argument("dialplan", type=Path, nargs="?", help="defaults to the test file's 'dialplan:'")
    t.add_argument("tests", type=Path)
    t.add_argument("--show", action="store_true", help="print every conversation and an outcome table")
    t.set_defaults(func=cmd_test_script)

    sim = sub.add_parser("simulate", help="run a whole call without SIP: the customer's turns come from WAV files")
    sim.add_argument("dialplan", type=Path)
    sim.add_argument(
        "--audio",
        type=Path,
        required=True,
        help="a directory of WAVs, one per turn (name order; '@prompt+MS' in a name barges in MS after a prompt starts), or one WAV played from the answer",
    )
    sim.add_argument("--out", type=Path, default=Path("simulation"), help="where call.wav (customer left, bot right) and call.json go")
    sim.add_argument("--contact", action="append", default=[], metavar="FIELD=VALUE")
    sim.add_argument("--cache", type=Path, default=None, help="prompt cache directory (default: ~/.cache/voicebot/prompts)")
    sim.add_argument("--models", type=Path, default=None, help="models directory (default: models/ or $VOICEBOT_MODELS_DIR)")
    sim.add_argument("--reaction-ms", type=int, default=400, help="customer's pause before answering")
    sim.add_argument(
        "--phone-line",
        type=float,
        default=None,
        metavar="SNR_DB",
        help="pass the customer's audio through a simulated phone line (8 kHz, μ-law, noise SNR_DB below the speech)",
    )
    sim.add_argument("--max-s", type=int, default=300)
    sim.set_defaults(func=cmd_simulate)

    from voicebot.apps.campaign_cli import register_cli as register_campaign_cli
    from voicebot.bench.cli import register_cli as register_bench_cli
    from voicebot.report.cli import register_cli as register_report_cli
    from voicebot.speech.models import register_cli

    register_cli(sub)
    register_campaign_cli(sub)
    register_report_cli(sub)
    register_bench_cli(sub)
    return p


# --- validate ------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    errors = 0
    for path in args.files:
        loaded, problems = check_dialplan(path)
        for problem in problems:
            print(problem)
        n_err = sum(p.severity == "error" for p in problems)
        errors += n_err
        if loaded is not None:
            g = loaded.graph
            print(
                f"{path}: ok ({len(g.nodes)} nodes, {sum(len(n.routes) for n in g.nodes.values())} intent routes"
                f"{f', {len(problems)} warning(s)' if problems else ''})"
            )
        else:
            print(f"{path}: {n_err} error(s)")
    return 1 if errors else 0


# --- chat ------------------------------------------------------------------------------------------


def _contact_from_flags(pairs: list[str], loaded: LoadedDialplan, out: Console) -> dict[str, str]:
    contact: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VoicebotError(f"--contact '{pair}': write FIELD=VALUE", code="bad-argument")
        contact[key.strip()] = value
    for name, spec in loaded.dialplan.campaign.contact_fields.items():
        if name not in contact and spec.default is None and spec.example is not None:
            contact[name] = spec.example
            out.print(escape(f"(contact {name} = {spec.example!r}, the dialplan's example; set it with --contact {name}=...)"), style="dim")
    return contact


def cmd_chat(args: argparse.Namespace) -> int:
    from voicebot.script.conversation import TextConversation, describe_action, parse_typed_line

    out = Console(highlight=False)
    loaded = load_dialplan(args.dialplan)
    contact = _contact_from_flags(args.contact, loaded, out)
    conv = TextConversation(loaded.graph, contact, transfer_ok=not args.transfer_fail)
    interactive = sys.stdin.isatty()
    if interactive:
        out.print("[dim]Type what the person says. Empty line or /silence: silence; /dtmf 1: a key; /hangup; Ctrl-D: end.[/dim]")
    _print_actions(out, conv.start(), describe_action)
    while not conv.finished:
        line = _read_line(interactive)
        if line is None:
            out.print(escape(f"(input ended while listening at '{conv.listening_at}')"), style="dim")
            break
        try:
            turn = parse_typed_line(line)
        except ValueError as exc:
            out.print(escape(str(exc)), style="red")
            continue
        if not interactive:
            out.print(escape(f"you> {line.rstrip()}"), soft_wrap=True)
        if args.scores and turn.text:
            scores = conv.engine.node.matcher.scores(turn.text) if conv.engine.node.matcher else []
            out.print(escape("  scores: " + ", ".join(f"{m.intent} {m.score:.2f}" for m in scores[:5])), style="dim")
        seen = len(conv.engine.turns)
        actions = conv.send(turn)
        last = conv.engine.turns[seen] if len(conv.engine.turns) > seen else None
        if last is not None:
            how = f"{last.result}" + (f" '{last.intent}' {last.score:.2f}" if last.intent and last.score is not None else "")
            out.print(escape(f"  ({how})"), style="dim")
        _print_actions(out, actions, describe_action)
    res = conv.result()
    lines = ["--- end of conversation", f"outcome: {res.outcome or 'none (still listening)'}", f"path: {' → '.join(res.path)}"]
    if res.slots:
        lines.append("slots: " + ", ".join(f"{k}={v!r}" for k, v in res.slots.items()))
    changed = {k: v for k, v in res.variables.items() if k not in loaded.dialplan.script.variables}
    if changed:
        lines.append("variables: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
    for line in lines:
        out.print(escape(line), soft_wrap=True)
    return 0


def _read_line(interactive: bool) -> str | None:
    try:
        return input("you> ") if interactive else _stdin_line()
    except EOFError:
        return None


def _stdin_line() -> str | None:
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def _print_actions(out: Console, actions, describe) -> None:
    from voicebot.script.engine import Say

    for action in actions:
        text = describe(action)
        out.print(escape(text), style="bold cyan" if isinstance(action, Say) else "dim", soft_wrap=True)


# --- simulate ------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voicebot" / "prompts"


def cmd_simulate(args: argparse.Namespace) -> int:
    from voicebot.apps import recipe
    from voicebot.audio.frames import AudioFormat
    from voicebot.campaign.prompts import prerender
    from voicebot.simulate import load_customer_audio, simulate_call
    from voicebot.speech.models import models_dir

    out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    loaded = load_dialplan(args.dialplan)
    speech = loaded.dialplan.speech
    contact = _contact_from_flags(args.contact, loaded, out)
    fmt = AudioFormat(speech.rate_hz)
    mdir = args.models or models_dir()
    try:
        customer = load_customer_audio(args.audio, fmt, args.reaction_ms, args.phone_line)
    except (OSError, ValueError, EOFError) as exc:
        raise VoicebotError(f"{args.audio}: {exc}", code="bad-audio") from exc
    cache = recipe.prompt_cache(loaded, args.cache or default_cache_dir(), mdir)
    # as a campaign does: every prompt known in advance is rendered before the call
    pre = prerender(loaded.graph, cache, fmt.rate_hz, [contact])
    out.print(
        escape(
            f"prompts: {pre.rendered} ready ({pre.synthesized} synthesised in {pre.synthesis_s:.1f} s); "
            f"{len(pre.midcall)} may need synthesis mid-call"
        ),
        style="dim",
    )
    for failure in pre.failures:
        out.print(escape(f"  {failure.where}: {failure.message}"), style="red")
    asr = recipe.asr_engine(loaded, mdir)
    session = recipe.call_session(loaded, asr, cache, contact, fmt.rate_hz)
    rep, _ = simulate_call(session, customer, args.out, args.max_s * 1000)
    # The simulator's clock stands still while the pipeline computes: on a live call the
    # reply comes "compute" later than "speech end → bot audio" says.
    table = Table(title=f"Turns ({asr.name}, {fmt.rate_hz} Hz; virtual clock: add compute for a live call)")
    for col in ("#", "node", "heard", "end", "speech end → bot audio", "compute"):
        table.add_column(col, justify="right" if col in ("#", "speech end → bot audio", "compute") else "left")
    for i, t in enumerate(rep.turns, start=1):
        v2v = f"{t['end_of_speech_to_bot_audio_ms']} ms" if t["end_of_speech_to_bot_audio_ms"] is not None else "-"
        table.add_row(str(i), t["node"], escape(t["text"]), t["end_reason"], v2v, f"{t['compute_ms']:.0f} ms")
    out.print(table)
    for it in rep.interruptions:
        out.print(escape(f"  {it['ts_ms']} ms: {it['kind']} {it['prompt_id']} (speech onset {it['onset_ms']} ms) {it['words']!r}"))
    out.print(escape(f"outcome: {rep.outcome}"))
    out.print(escape(f"path: {' → '.join(rep.path)}"), soft_wrap=True)
    out.print(escape(f"wrote {args.out / 'call.wav'} (customer left, bot right) and {args.out / 'call.json'}"))
    return 0


# --- test-script ---------------------------------------------------------------------------------


def cmd_test_script(args: argparse.Namespace) -> int:
    from voicebot.script.scripttest import check_references, load_tests, run_tests

    out = Console(highlight=False)
    tests = load_tests(args.tests)
    dialplan_path = args.dialplan or tests.dialplan_path()
    if dialplan_path is None:
        raise VoicebotError(f"{args.tests}: name the dialplan on the command line or with 'dialplan:' in the file", code="bad-argument")
    loaded = load_dialplan(dialplan_path)
    bad_refs = check_references(tests, loaded.graph)
    if bad_refs:
        raise ConfigError("\n".join(bad_refs))
    results = run_tests(loaded.graph, tests)
    for r in results:
        if args.show:
            out.print(escape(f"── {r.name}"), style="bold")
            for line in r.transcript:
                out.print(escape("  " + line), style="cyan" if line.startswith("bot:") else None, soft_wrap=True)
        if r.ok:
            out.print("[green]PASS[/green] " + escape(r.name))
        else:
            out.print("[red]FAIL[/red] " + escape(f"{r.name} ({r.where})"), soft_wrap=True)
            for failure in r.failures:
                out.print(escape(f"    {failure}"), soft_wrap=True)
    if args.show:
        _outcome_table(out, loaded, results)
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    out.print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _outcome_table(out: Console, loaded: LoadedDialplan, results) -> None:
    table = Table(title=f"Outcomes: {loaded.dialplan.campaign.name}")
    table.add_column("conversation")
    table.add_column("outcome")
    table.add_column("nodes", justify="right")
    table.add_column("test")
    for r in results:
        table.add_row(escape(r.name), r.outcome or "(none)", str(len(r.path)), "[green]pass[/green]" if r.ok else "[red]FAIL[/red]")
    out.print(table)


if __name__ == "__main__":
    sys.exit(main())
