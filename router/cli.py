"""The `omnirouter` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from router import __version__

DEFAULT_CONFIG = os.environ.get("OMNIROUTER_CONFIG", "config/channels.yaml")

# What supervisors act on (systemd's Restart=on-failure, RestartPreventExitStatus=2).
RUN_EXIT_STATUSES = """\
exit status:
  0  stopped on request (SIGTERM, SIGINT) after finishing the records in hand
  1  stopped by a failure: a component failed while running, or start-up did
     (store, bus; the log says which), or the HTTP address is taken (one line
     on stderr). Start it again.
  2  the config file or the command line is invalid (every problem is printed);
     starting it again will not help until it is fixed
"""

SIMULATE_EPILOG = """\
event lines (one JSON object each; blank lines and lines starting with # are skipped):
  {"at": "2026-03-02T10:00:00Z", "channel": "support-email", "from": "eva@shop.test",
   "thread": "t1", "subject": "Invoice", "text": "my invoice is wrong"}
  {"agent": "ana", "reply": "Fixed!", "conversation": "support-email/t1"}
  {"agent": "ana", "command": "transfer", "args": ["billing"], "conversation": "..."}
  {"at": "2026-03-02T18:00:00Z"}            only moves the clock
  an unknown key is an error naming the line; docs/routing.md lists every field

output (json): decisions keep their shape (input, conversation_id, action, ...);
  other lines have "type": "output" (customer_message, delivery, supervisor_notice,
  incident), "summary" (per channel, last) and, with --compare, "assignment".

exit status: 0 done, 2 invalid config, events or customers file (the reason is printed)
"""


STAFFING_EPILOG = """\
what it shows: the model and its inputs per channel (handling time, measured from the
  conversations' assignments or given; the target; the slots an agent holds at once),
  then per hour: arrivals, offered traffic (erlangs), agents needed, agents scheduled,
  the service level the needed agents give, and SHORT where the schedules fall short.

exit status: 0 done, 2 invalid config, events or option (the reason is printed)
"""


DLQ_EPILOG = """\
ids are as `dlq list` shows them: <partition>-<offset> on the dead-letter topic,
or outbox-<row> for an output whose dead letter is gone.

replay, once the cause is fixed (and the daemon has reloaded the config):
  a record from a topic   produced again on its topic under its key; an inbound
                          one the router would still refuse is not (why is shown)
  an output               its outbox row is re-armed: the daemon publishes it
  an input                not replayable: the channel must take it in again
each entry is replayed once (`--again` repeats it; the router still applies an
inbound envelope once).

exit status: 0 done, 1 some entries were not replayed (each is named with why),
  2 invalid config or unknown id
"""


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):  # [::1]:8080, as IPv6 is written
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {value!r}")
    return share


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnirouter", description="Omnichannel message router for customer service."
    )
    parser.add_argument("--version", action="version", version=f"omnirouter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the daemon (connectors, router, HTTP listener)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_EXIT_STATUSES,
    )
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    run.add_argument(
        "--only",
        type=_names,
        help="run only these parts: 'router' and/or channel names, comma-separated",
    )
    run.add_argument(
        "--http",
        type=_host_port,
        metavar="HOST:PORT",
        help="listen for HTTP on HOST:PORT instead of the config's http.host and http.port",
    )

    norm = sub.add_parser(
        "normalize",
        help="turn one raw channel input into an envelope (JSON on stdout; exit 2 with a reason)",
    )
    norm.add_argument("--type", required=True, help="connector type, e.g. email")
    norm.add_argument("--channel", help="channel name for the envelope (default: the type)")
    norm.add_argument(
        "-c",
        "--config",
        help="config file: the channel's settings (time zone, region, columns) come from it",
    )
    norm.add_argument("--blobs", help="blob store directory (default: a temporary one)")
    norm.add_argument("file", help="the raw input, e.g. a .eml file ('-' for stdin)")

    sim = sub.add_parser(
        "simulate",
        help="run events through the routing code; show its decisions and what it would send",
        description=(
            "Run a file of events through the real routing code on a throwaway store and\n"
            "print every decision and every output (messages to customers, deliveries to\n"
            "agents, supervisor notices, incidents) in time order, then figures per channel.\n"
            "The same events, config and customers give the same output, byte for byte."
        ),
        epilog=SIMULATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim_config = sim.add_mutually_exclusive_group()
    sim_config.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    sim_config.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="run the events on two config files; show whose conversations change and the"
        " figures per channel before and after",
    )
    sim.add_argument(
        "--format",
        choices=["json", "table"],
        default="json",
        help="json: one JSON object per line, for tools (default); table: a readable timeline",
    )
    sim.add_argument(
        "--customers",
        metavar="FILE",
        help="known customers to load first (CSV or YAML, as for import-customers)",
    )
    sim.add_argument(
        "events", help="JSON lines: messages, agent commands and replies, times ('-': stdin)"
    )

    staff = sub.add_parser(
        "staffing",
        help="agents needed per hour and channel (Erlang C) next to what the schedules provide",
        description=(
            "Work out, per hour and channel, how many agents answer the target share of\n"
            "conversations within the channel's first-response target (Erlang C, with the\n"
            "handling time measured per channel), next to the agents the config's schedules\n"
            "put on shift; hours where the schedules fall short are flagged. The traffic is\n"
            "an events file (as for simulate) run through the routing code, or, without\n"
            "one, the router's store (the latest day in it, or --day)."
        ),
        epilog=STAFFING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    staff.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    staff.add_argument(
        "events", nargs="?", help="JSON lines as for simulate ('-': stdin); none: the store"
    )
    staff.add_argument("--day", type=_day, help="the day to work out, YYYY-MM-DD (local)")
    staff.add_argument(
        "--timezone",
        help="zone the hours are read in (default: sla.business_hours' zone, else UTC)",
    )
    staff.add_argument(
        "--handle-time",
        action="append",
        default=[],
        metavar="CHANNEL=DURATION",
        help="handling time of a channel's conversations (e.g. chat=6m), instead of the"
        " one measured; repeat per channel",
    )
    staff.add_argument(
        "--target",
        metavar="DURATION",
        help="answer within this (default: each channel type's first-response target for"
        " normal priority)",
    )
    staff.add_argument(
        "--service-level",
        type=_share,
        default=0.8,
        metavar="SHARE",
        help="share to answer within the target, between 0 and 1 (default 0.8)",
    )
    staff.add_argument(
        "--format", choices=["table", "json"], default="table", help="table (default) or json"
    )

    agents = sub.add_parser(
        "agents",
        help="each agent's status, shift, load per channel type and whether deliveries reach them",
    )
    agents.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    agents.add_argument("--json", action="store_true", help="one JSON object per line")

    convs = sub.add_parser("conversations", help="look at conversations")
    convs_sub = convs.add_subparsers(dest="action", required=True)
    show = convs_sub.add_parser(
        "show", help="a conversation's customer, transcript and routing history with reasons"
    )
    show.add_argument("conversation", metavar="ID|#REF", help="its id, or the #REF people quote")
    show.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (for the store)")
    show.add_argument("--json", action="store_true", help="one JSON object")

    dlq = sub.add_parser(
        "dlq",
        help="dead letters: list them, replay them once their cause is fixed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DLQ_EPILOG,
    )
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_sub.add_parser("list", help="every dead letter, oldest first, and its state")
    dlq_list.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = dlq_sub.add_parser(
        "replay",
        help="send dead letters back where they came from (each once)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DLQ_EPILOG,
    )
    replay.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID", help="entries, as listed")
    which.add_argument("--all", action="store_true", help="every entry not replayed yet")
    replay.add_argument(
        "--again", action="store_true", help="replay entries replayed before (inbound: deduped)"
    )

    inc = sub.add_parser("incidents", help="list the incident register (newest first)")
    inc.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (for the store)")
    inc.add_argument("--json", action="store_true", help="one JSON object per line")
    from router.store.schema import INCIDENT_KINDS  # the register's own list

    inc.add_argument("--kind", choices=INCIDENT_KINDS)
    inc.add_argument("--limit", type=int, default=100)

    imp = sub.add_parser("import-customers", help="import known customers from CSV or YAML")
    imp.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (for the store)")
    imp.add_argument(
        "--default-region",
        help="region for national phone numbers, e.g. ES (default: the phone channel's)",
    )
    imp.add_argument("file", help="customers.csv or customers.yaml")

    from router.status.command import add_parser as add_status

    add_status(sub, DEFAULT_CONFIG)

    check = sub.add_parser("check", help="validate a config file (exit 0 valid, 2 invalid)")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    return parser


def _config_or_none(path: str, *, channel_secrets: bool = True) -> Any:
    """The loaded config, or None after printing every problem (the caller exits 2).
    `channel_secrets=False` for commands that start no channel (see `load_config`)."""
    from router.config import load_config
    from router.errors import ConfigError

    try:
        return load_config(path, channel_secrets=channel_secrets)
    except ConfigError as exc:
        _print_problems(exc)
        return None


def _print_problems(exc: Any) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from router.daemon import Daemon
    from router.errors import ConfigError
    from router.http import ListenError
    from router.logs import setup_logging

    config = _config_or_none(args.config)
    if config is None:
        return 2
    setup_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        redact=config.logging.redact_personal_data,
    )
    host, port = args.http if args.http else (None, None)
    try:
        daemon = Daemon(
            config, config_path=args.config, only=args.only, http_host=host, http_port=port
        )
        return asyncio.run(daemon.run())
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    except ListenError as exc:
        print(f"omnirouter: {exc}", file=sys.stderr)
        return 1


def _normalize(args: argparse.Namespace) -> int:
    import tempfile

    import orjson

    from router.blobs import BlobStore
    from router.budget import Budget, cpu_seconds_for
    from router.connector import load_registry
    from router.envelope import encode
    from router.errors import OmniError

    spec = load_registry().get(args.type)
    if spec is None or spec.normalize is None:
        known = sorted(t for t, s in load_registry().items() if s.normalize is not None)
        print(f"no normalizer for type {args.type!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    settings = None
    if args.config is not None:
        config = _config_or_none(args.config)
        if config is None:
            return 2
        name = args.channel or args.type
        channel = next((c for c in config.channels if c.name == name), None)
        if channel is None or channel.type != args.type:
            print(f"no channel {name!r} of type {args.type!r} in {args.config}", file=sys.stderr)
            return 2
        settings = channel.settings
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="omnirouter-blobs-") as tmp:
        blobs = BlobStore(args.blobs or tmp)
        # Input from outside: a hostile file must not keep this command busy for minutes.
        try:
            with Budget(f"normalize --type {args.type}") as budget:
                envelope = budget.call(
                    spec.normalize,
                    raw,
                    args.channel or args.type,
                    blobs,
                    settings,
                    cpu_seconds=cpu_seconds_for(len(raw)),
                )
        except OmniError as exc:
            print(f"cannot normalize {args.file}: {exc}", file=sys.stderr)
            return 2
    pretty = orjson.dumps(orjson.loads(encode(envelope)), option=orjson.OPT_INDENT_2)
    sys.stdout.buffer.write(pretty)
    sys.stdout.buffer.write(b"\n")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from router.errors import OmniError
    from router.logs import setup_logging
    from router.simulate import read_events, run, run_compare

    paths = args.compare or [args.config or DEFAULT_CONFIG]
    configs = [_config_or_none(path) for path in paths]
    if any(config is None for config in configs):
        return 2
    # The report goes to stdout; keep the log quiet and out of the way.
    setup_logging(level="warning", fmt="console", stream=sys.stderr)
    customers = Path(args.customers) if args.customers else None
    try:
        if args.events == "-":
            events = list(read_events(sys.stdin))
        else:
            with open(args.events, encoding="utf-8") as lines:
                events = list(read_events(lines))
        if args.compare:
            old, new = configs
            go = run_compare(old, new, events, sys.stdout, fmt=args.format, customers=customers)
        else:
            go = run(configs[0], events, sys.stdout, fmt=args.format, customers=customers)
        return asyncio.run(go)
    except OSError as exc:
        print(f"cannot read {exc.filename or args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    except OmniError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2


def _with_store(
    args: argparse.Namespace, action: Any, *, channel_secrets: bool = False, create: bool = False
) -> int:
    """Run `action(args, config, store)`. Commands that start no channel load the config
    without the channels' secrets (the default here); only commands that write
    (`create=True`) create a SQLite store that does not exist."""
    from router.errors import OmniError
    from router.logs import setup_logging
    from router.store import open_store

    config = _config_or_none(args.config, channel_secrets=channel_secrets)
    if config is None:
        return 2
    # Results go to stdout; the log (warnings only, redacted as configured) to stderr.
    setup_logging(
        level="warning",
        fmt="console",
        redact=config.logging.redact_personal_data,
        stream=sys.stderr,
    )

    async def go() -> int:
        store = await open_store(config.store.dsn(), create=create)
        try:
            code: int = await action(args, config, store)
            return code
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except OmniError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2


async def _agents(args: argparse.Namespace, config: Any, store: Any) -> int:
    from router.envelope import now_utc
    from router.ops import agents

    agents.show(await agents.agent_lines(config, store, now_utc()), as_json=args.json)
    return 0


async def _conversation(args: argparse.Namespace, config: Any, store: Any) -> int:
    from router.ops import conversations

    shown = await conversations.read(store, args.conversation)
    if shown is None:
        print(f"no conversation {args.conversation!r} (an id or a #REF)", file=sys.stderr)
        return 2
    conversations.show(shown, as_json=args.json)
    return 0


async def _incidents(args: argparse.Namespace, config: Any, store: Any) -> int:
    from router.ops import incidents

    incidents.show(await incidents.read(store, args.limit, args.kind), as_json=args.json)
    return 0


async def _dlq(args: argparse.Namespace, config: Any, store: Any) -> int:
    from router.bus.base import Topics
    from router.daemon import open_bus
    from router.ops import dlq

    topics = Topics(prefix=config.bus.topic_prefix)
    bus = open_bus(config)
    await bus.start()
    try:
        found = await dlq.entries(bus, topics, store)
        if args.action == "list":
            dlq.show(found, as_json=args.json)
            return 0
        return await _replay(args, config, store, bus, topics, found)
    finally:
        await bus.stop()


async def _replay(
    args: argparse.Namespace, config: Any, store: Any, bus: Any, topics: Any, found: Any
) -> int:
    from router.ops import dlq
    from router.routing.context import Routing

    try:
        chosen = dlq.choose(found, args.ids, every=args.all, again=args.again)
    except dlq.ReplayError as exc:
        print(f"dlq replay: {exc}", file=sys.stderr)
        return 2
    result = await dlq.replay(Routing(config, store, topics), bus, chosen, again=args.again)
    dlq.report(result)
    return 1 if result.skipped else 0


async def _import_customers(args: argparse.Namespace, config: Any, store: Any) -> int:
    """Exit 0 when every row went in, 1 when some were rejected (each on stderr)."""
    from router.customers import (
        ImportReport,
        default_region,
        import_customers,
        parse_rows,
        read_file,
    )
    from router.envelope import now_utc
    from router.ops.console import progress, tracked

    report = ImportReport()
    records = read_file(Path(args.file))
    region = args.default_region or default_region(config)
    rows = list(parse_rows(records, default_region=region, report=report))
    with progress("importing customers", len(rows)) as bar:
        await import_customers(store, tracked(rows, bar), now_utc(), report)
    for line in [*report.problems, *report.notes]:
        print(line, file=sys.stderr)
    print(report.summary())
    return 1 if report.rejected else 0


def _staffing(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from router.errors import OmniError
    from router.logs import setup_logging
    from router.simulate import read_events
    from router.staffing import StaffingError, read_handle_times, run_staffing, seconds
    from router.store import open_store

    config = _config_or_none(args.config, channel_secrets=False)
    if config is None:
        return 2
    setup_logging(level="warning", fmt="console", stream=sys.stderr)
    try:
        zone = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        print(f"staffing: --timezone {args.timezone!r}: not a time zone", file=sys.stderr)
        return 2
    try:
        options: dict[str, Any] = {
            "day": args.day,
            "zone": zone,
            "handle_given": read_handle_times(args.handle_time),
            "target_given": seconds(args.target) if args.target else None,
            "share": args.service_level,
            "fmt": args.format,
        }
        if args.events is not None:
            if args.events == "-":
                events = list(read_events(sys.stdin))
            else:
                with open(args.events, encoding="utf-8") as lines:
                    events = list(read_events(lines))
            return asyncio.run(run_staffing(config, sys.stdout, events=events, **options))

        async def from_store() -> int:
            store = await open_store(config.store.dsn(), create=False)
            try:
                return await run_staffing(config, sys.stdout, store=store, **options)
            finally:
                await store.close()

        return asyncio.run(from_store())
    except StaffingError as exc:
        print(f"staffing: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot read {exc.filename or args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    except OmniError as exc:
        print(f"staffing: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "normalize":
        return _normalize(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "staffing":
        return _staffing(args)
    if args.command == "agents":
        return _with_store(args, _agents)
    if args.command == "conversations":
        return _with_store(args, _conversation)
    if args.command == "dlq":
        # Replaying writes to the bus and the store, after the cause is fixed: the
        # whole config must be valid then (listing only reads).
        replay = args.action == "replay"
        return _with_store(args, _dlq, channel_secrets=replay, create=replay)
    if args.command == "incidents":
        return _with_store(args, _incidents)
    if args.command == "import-customers":
        return _with_store(args, _import_customers, channel_secrets=True, create=True)
    if args.command == "status":
        from router.status.command import run as status

        return status(args)
    if args.command == "check":
        from router.config import check

        return check(args.config)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
