"""`voicebot run` and `voicebot export`: a campaign from the command line, with a live view."""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from voicebot.campaign.runner import CampaignRun
    from voicebot.telephony.pool import WorkerPool


def register_cli(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run a campaign: import contacts, dial, talk, record every result (Ctrl-C pauses)")
    r.add_argument("dialplan", type=Path)
    r.add_argument("--contacts", type=Path, help="CSV or XLSX to import (again on a rerun: known numbers are kept as they are)")
    r.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=HEADER",
        help="which column holds a field (repeatable): phone=Telefon, first_name='First name', tags=Labels",
    )
    r.add_argument("--db", type=Path, help="the campaign's store (default: campaigns/<campaign name>.db)")
    r.add_argument("--models", type=Path, default=None, help="models directory (default: models/ or $VOICEBOT_MODELS_DIR)")
    r.add_argument("--concurrency", type=int, default=None, help="override campaign.max_concurrent_calls")
    r.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP (default 127.0.0.1)")
    r.add_argument("--grace", type=float, default=120.0, help="seconds calls in progress may go on after Ctrl-C")
    r.add_argument(
        "--prompt-cache-mb",
        type=_megabytes,
        default=None,
        metavar="MB",
        help="prompt audio on disk at most, least recently used evicted (default: campaign.prompt_cache.budget_mb, 256)",
    )
    bus = r.add_mutually_exclusive_group()
    bus.add_argument(
        "--broker",
        metavar="URL",
        help="publish events to this MQTT broker: mqtt://[user@]host[:port] "
        "(password from $VOICEBOT_MQTT_PASSWORD); default: a private mosquitto on 127.0.0.1",
    )
    bus.add_argument("--no-broker", action="store_true", help="keep events in the store only")
    r.add_argument(
        "--workers",
        choices=("local", "remote"),
        default="local",
        help="local: media workers in this process (default); remote: calls go over --broker to `voicebot worker`s",
    )
    r.add_argument(
        "--until-idle", action="store_true", help="stop when nothing is due now (retries and calling windows wait for the next run)"
    )
    r.add_argument("--ignore-calling-window", action="store_true", help="dial at any hour: for a local test PBX only, never real people")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("worker", help="take a campaign's calls from the broker on this host (for `voicebot run --workers remote`)")
    w.add_argument("dialplan", type=Path, help="the same dialplan file as the manager's (compared by digest)")
    w.add_argument(
        "--broker", metavar="URL", required=True, help="mqtt://[user@]host[:port] or mqtts://... (password from $VOICEBOT_MQTT_PASSWORD)"
    )
    w.add_argument("--name", default="", help="this worker's name on the broker (default: <hostname>-<pid>)")
    w.add_argument("--calls", type=int, default=8, help="calls this host takes at once (default 8)")
    w.add_argument("--work-dir", type=Path, default=Path("worker"), help="prompts and call records (default ./worker)")
    w.add_argument("--models", type=Path, default=None, help="models directory (default: models/ or $VOICEBOT_MODELS_DIR)")
    w.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP (default 127.0.0.1)")
    w.add_argument("--grace", type=float, default=120.0, help="seconds calls in progress may go on after SIGTERM/Ctrl-C")
    w.set_defaults(func=cmd_worker)

    op = sub.add_parser("operator", help="a live operator's console: each call the bot hands over, with its context")
    op.add_argument(
        "--broker", metavar="URL", required=True, help="mqtt://[user@]host[:port] or mqtts://... (password from $VOICEBOT_MQTT_PASSWORD)"
    )
    op.add_argument("--campaign", default=None, help="only this campaign's handoffs (default: every campaign)")
    op.add_argument(
        "--exit-after",
        type=int,
        default=None,
        metavar="N",
        help="quit once N handoffs were shown and their calls ended (scripts and tests)",
    )
    op.set_defaults(func=cmd_operator)

    contacts = sub.add_parser("contacts", help="contacts files: check one without dialling")
    csub = contacts.add_subparsers(dest="contacts_command", required=True)
    ch = csub.add_parser(
        "check",
        help="import a contacts file as `voicebot run` would, into a throwaway store, and report: bad rows, duplicates, "
        "DNC hits, contacts per time zone and tag, when each zone's calling window opens; dials nothing",
    )
    ch.add_argument("file", type=Path)
    ch.add_argument("--dialplan", type=Path, help="its campaign's column mapping, fields, region, extensions, DNC file and window")
    ch.add_argument("--region", default=None, help="for numbers written without +country (default: the dialplan's, else US)")
    ch.add_argument("--dnc", type=Path, default=None, help="a do-not-call list (default: the dialplan's campaign.contacts.dnc_file)")
    ch.add_argument("--column", action="append", default=[], metavar="FIELD=HEADER", help="as for `voicebot run` (repeatable)")
    ch.add_argument("--json", action="store_true", help="the report as one JSON object")
    ch.set_defaults(func=cmd_contacts_check)

    e = sub.add_parser("export", help="write a campaign's attempts and results")
    e.add_argument("db", type=Path)
    e.add_argument("--csv", type=Path, required=True, help="output file ('-' for stdout)")
    e.set_defaults(func=cmd_export)


def cmd_run(args: argparse.Namespace) -> int:
    from voicebot.campaign.runner import CampaignRun, RunOptions  # pjsua2 and the models: only for this command
    from voicebot.dialplan import load_dialplan
    from voicebot.logs import log_to_file

    out = Console(stderr=False)
    db = args.db
    if db is None:
        db = Path("campaigns") / f"{_safe_name(load_dialplan(args.dialplan).dialplan.campaign.name)}.db"
    columns = _columns(args.column)
    if args.ignore_calling_window:
        out.print("[bold red]--ignore-calling-window: dialling at any hour (a local test PBX only)[/]")
    options = RunOptions(
        args.dialplan,
        db,
        args.contacts,
        args.models,
        concurrency=args.concurrency,
        bind_address=args.bind,
        grace_s=args.grace,
        until_idle=args.until_idle,
        ignore_calling_window=args.ignore_calling_window,
        columns=columns,
        broker=None if args.no_broker else (args.broker or ""),
        workers=args.workers,
        prompt_cache_mb=args.prompt_cache_mb,
    )

    def media_workers(concurrency: int) -> WorkerPool:
        # the recipe imports pjsua2 and the speech engines: only a run with local workers gets here
        from voicebot.apps.recipe import media_workers

        assert run.loaded is not None and options.prompts_dir is not None
        return media_workers(
            options.dialplan, run.loaded, concurrency, options.prompts_dir, options.models_dir, options.calls_dir, options.bind_address
        )

    bar = _ImportBar(out, args.contacts)
    run = CampaignRun(options, pool_factory=media_workers if args.workers == "local" else None, on_import=bar.update)
    log_to_file(db.with_suffix(".log"))
    out.print(f"store {db}, log {db.with_suffix('.log')}, call records {run.options.calls_dir}")
    try:
        with bar:
            run.prepare()
        _print_import(run, out)
        run.install_signal_handlers()
        view = _LiveView(run, out)
        with view:
            summary = run.run(on_tick=view.tick)
        _print_summary(run, summary, out)
    finally:
        run.close()
    return 3 if run.progress.state == "paused" else 0  # 3: paused, run again to resume


def _columns(pairs: list[str]) -> dict[str, str]:
    from voicebot.errors import VoicebotError

    columns = {}
    for pair in pairs:
        key, sep, header = pair.partition("=")
        if not sep or not key.strip() or not header.strip():
            raise VoicebotError(f"--column '{pair}': write FIELD=HEADER, e.g. phone=Telefon", code="bad-argument")
        columns[key.strip()] = header.strip()
    return columns


def cmd_contacts_check(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from voicebot.campaign.check import check_contacts
    from voicebot.campaign.runner import contacts_mapping
    from voicebot.config import Campaign
    from voicebot.dialplan import load_dialplan

    out = Console(stderr=False, soft_wrap=True)  # a report to read or grep: no wrapping at 80 columns in a pipe
    dnc = args.dnc
    if args.dialplan is not None:
        campaign = load_dialplan(args.dialplan).dialplan.campaign
        if args.region:
            campaign = campaign.model_copy(update={"default_region": args.region.upper()})
        if dnc is None and campaign.contacts.dnc_file:
            dnc = Path(campaign.contacts.dnc_file)
            dnc = dnc if dnc.is_absolute() else args.dialplan.parent / dnc
    else:
        # no dialplan: the defaults `voicebot run` would use, with a trunk that is never dialled
        campaign = Campaign.model_validate(
            {"name": "contacts-check", "trunk": {"uri_template": "sip:{number}@invalid"}, "default_region": (args.region or "US").upper()}
        )
    now = datetime.now(UTC)
    bar = _ImportBar(Console(stderr=True), args.file)
    with bar:
        report = check_contacts(args.file, campaign, contacts_mapping(campaign.contacts, _columns(args.column)), dnc, now, bar.update)
    if args.json:
        print(report.to_json(now))
        return 1 if report.problems else 0
    i = report.imported
    out.print(
        f"{i.source}: {i.rows} rows, {i.contacts} contacts, {i.duplicates} duplicate rows merged, "
        f"{i.dnc} on the DNC list, {len(report.problems)} rows with problems",
        highlight=False,
    )
    if report.problems:
        out.print("rows with problems (left out):")
        for problem in report.problems:
            out.print(f"  {problem}", highlight=False, markup=False)
    if report.dnc_numbers:
        out.print("on the do-not-call list (never dialled):")
        for row, phone in report.dnc_numbers:
            out.print(f"  row {row}: {phone}", highlight=False)
    if report.zones:
        out.print("contacts to dial per time zone, and when the calling window opens there:")
        for z in report.zones:
            when = "open now" if z.window_opens <= now else f"opens {z.window_opens.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            default = f" ({z.by_default} by default: their number gives no single zone)" if z.by_default else ""
            out.print(f"  {z.zone:<32} {z.contacts:>9}  {when}{default}", highlight=False)
    if report.tags:
        out.print("contacts to dial per tag:")
        for tag, n in report.tags.items():
            out.print(f"  {tag:<32} {n:>9}", highlight=False, markup=False)
    out.print("nothing was dialled")
    return 1 if report.problems else 0


def cmd_worker(args: argparse.Namespace) -> int:
    from voicebot.apps.worker_agent import BusWorker, BusWorkerOptions  # pjsua2 and the models: only for this command
    from voicebot.bus.broker import BrokerSettings
    from voicebot.errors import VoicebotError
    from voicebot.logs import log_to_file

    if args.calls < 1:
        raise VoicebotError(f"--calls must be at least 1 (got {args.calls})", code="bad-argument")
    options = BusWorkerOptions(
        args.dialplan, BrokerSettings.from_url(args.broker), args.work_dir, args.name, args.calls, args.models, args.bind, args.grace
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(args.work_dir / "worker.log")
    worker = BusWorker(options)
    worker.install_signal_handlers()
    worker.prepare()
    print(f"worker {options.name}: campaign '{worker.campaign}', {worker.capacity} calls, broker {options.broker}", flush=True)
    worker.run()
    print(f"worker {options.name}: stopped", flush=True)
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from voicebot.bus.broker import BrokerSettings
    from voicebot.bus.operator_console import OperatorConsole

    console = OperatorConsole(BrokerSettings.from_url(args.broker), args.campaign, Console(), args.exit_after)
    try:
        console.run()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from voicebot.campaign.store import CampaignStore

    store = CampaignStore.open_readonly(args.db)
    to_stdout = str(args.csv) == "-"
    written = 0
    try:
        # row by row from the store's pages: a million attempts never sit in memory
        rows = store.export_rows()
        first = next(rows, None)
        if first is None:
            print(f"{args.db}: no attempts yet", file=sys.stderr)
        stream = sys.stdout if to_stdout else open(args.csv, "w", newline="", encoding="utf-8")  # noqa: SIM115
        try:
            writer = csv.DictWriter(stream, fieldnames=list(first) if first else ["attempt_id"])
            writer.writeheader()
            for row in itertools.chain([first] if first else [], rows):
                writer.writerow(row)
                written += 1
        finally:
            if not to_stdout:
                stream.close()
    finally:
        store.close()
    if not to_stdout:
        print(f"{written} attempts written to {args.csv}", file=sys.stderr)
    return 0


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"'{text}': a size in megabytes, above 0 (e.g. 256)")
    return value


def prompt_cache_note(prompts: dict[str, int]) -> str:
    """The prompt cache in a status line: its bytes against the budget, and how far rendering is behind."""
    if not prompts:
        return ""
    mb = prompts["bytes"] / 1e6
    budget = prompts["budget_bytes"] / 1e6
    note = f"prompts {mb:.1f}/{budget:.0f} MB"
    if prompts.get("queued") or prompts.get("rendering"):
        note += f", {prompts['queued'] + prompts['rendering']} to render"
    if prompts.get("dialled_unready"):
        note += f", {prompts['dialled_unready']} dialled before theirs were ready"
    return note


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "campaign"


def _print_import(run: CampaignRun, out: Console) -> None:
    imported = run.imported
    if run.recovered:
        out.print(f"{len(run.recovered)} attempt(s) were in progress when the last run ended: recorded as interrupted, to be retried")
    if imported is None:
        return
    out.print(
        f"{run.options.contacts}: {imported.rows} rows, {imported.contacts} contacts ({imported.added} new), "
        f"{imported.duplicates} duplicate rows merged, {imported.dnc} on the DNC list, {len(imported.problems)} rows with problems "
        f"({imported.seconds:.1f} s, {imported.rate_per_s:,.0f} rows/s)"
    )
    for problem in imported.problems[:20]:
        out.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
    if len(imported.problems) > 20:
        out.print(f"  ... and {len(imported.problems) - 20} more")


def _print_summary(run: CampaignRun, summary: dict, out: Console) -> None:
    table = Table(title=f"{run.loaded.dialplan.campaign.name}: {run.progress.state}")
    table.add_column("outcome")
    table.add_column("attempts", justify="right")
    for outcome, n in sorted(summary.get("outcomes", {}).items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(outcome, str(n))
    out.print(table)
    keys = ("contacts", "pending", "done", "dnc", "attempts")
    out.print("  ".join(f"{k}: {summary.get(k, 0)}" for k in keys))
    if run.progress.state == "paused":
        out.print("paused: run the same command again to resume")
    elif run.progress.state == "idle":
        out.print("nothing more is due now (retries or calling windows later): run the same command again then")


class _ImportBar:
    """A progress bar while a contacts file is imported (a million rows take about a minute)."""

    def __init__(self, out: Console, contacts: Path | None) -> None:
        self._progress = Progress(
            TextColumn("importing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeRemainingColumn(),
            console=out,
            transient=True,
            disable=contacts is None or not out.is_terminal,
        )
        self._task = self._progress.add_task(contacts.name if contacts else "", total=None)

    def __enter__(self) -> _ImportBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)


class _LiveView:
    """A live table in a terminal; a line every few seconds otherwise (CI logs, pipes)."""

    def __init__(self, run: CampaignRun, out: Console) -> None:
        self.run = run
        self.out = out
        self._live = Live(console=out, refresh_per_second=4, transient=True) if out.is_terminal else None
        self._last = 0.0

    def __enter__(self) -> _LiveView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def tick(self, run: CampaignRun) -> None:
        now = time.monotonic()
        if now - self._last < (0.25 if self._live is not None else 5.0):
            return
        self._last = now
        if self._live is not None:
            self._live.update(self._table())
        else:
            p = run.progress
            self.out.print(
                f"[{p.state}]{_bus_note(run)} dialled {p.dialled}, answered {p.answered}, in call {p.in_call}, ended {p.ended} "
                f"({p.per_minute():.1f}/min); {prompt_cache_note(p.prompts)}; "
                + ", ".join(f"{k} {v}" for k, v in p.outcomes.most_common()),
                highlight=False,
            )

    def _table(self) -> Table:
        p = self.run.progress
        table = Table(title=f"{self.run.loaded.dialplan.campaign.name} [{p.state}] {p.note}{_bus_note(self.run)}")
        for column in ("dialled", "answered", "in call", "ended", "calls/min"):
            table.add_column(column, justify="right")
        table.add_row(str(p.dialled), str(p.answered), str(p.in_call), str(p.ended), f"{p.per_minute():.1f}")
        outcomes = Table.grid(padding=(0, 2))
        for outcome, n in p.outcomes.most_common():
            outcomes.add_row(outcome, str(n))
        grid = Table.grid()
        grid.add_row(table)
        if p.prompts:
            grid.add_row(prompt_cache_note(p.prompts))
        grid.add_row(outcomes)
        return grid


def _bus_note(run: CampaignRun) -> str:
    pub = run.publisher
    if pub is None:
        return ""
    if pub.connected:
        return f" bus: {pub.published} events out"
    return f" bus: unreachable, {pub.backlog} events waiting in the store"
