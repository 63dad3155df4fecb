"""The `omnirouter` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from router import __version__

DEFAULT_CONFIG = os.environ.get("OMNIROUTER_CONFIG", "config/channels.yaml")


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnirouter", description="Omnichannel message router for customer service."
    )
    parser.add_argument("--version", action="version", version=f"omnirouter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (connectors, router, HTTP listener)")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    run.add_argument(
        "--only",
        type=_names,
        help="run only these parts: 'router' and/or channel names, comma-separated",
    )
    run.add_argument("--http", type=_host_port, help="HTTP listener HOST:PORT (overrides config)")

    norm = sub.add_parser(
        "normalize",
        help="turn one raw channel input into an envelope (JSON on stdout; exit 2 with a reason)",
    )
    norm.add_argument("--type", required=True, help="connector type, e.g. email")
    norm.add_argument("--channel", help="channel name for the envelope (default: the type)")
    norm.add_argument("--blobs", help="blob store directory (default: a temporary one)")
    norm.add_argument("file", help="the raw input, e.g. a .eml file ('-' for stdin)")

    sim = sub.add_parser(
        "simulate", help="run events through the routing code; one JSON decision per line"
    )
    sim.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    sim.add_argument("events", help="JSON lines: messages, agent commands and replies ('-': stdin)")

    check = sub.add_parser("check", help="validate a config file (exit 0 valid, 2 invalid)")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
    return parser


def _run(args: argparse.Namespace) -> int:
    from router.config import load_config
    from router.daemon import Daemon
    from router.errors import ConfigError
    from router.logs import setup_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    setup_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        redact=config.logging.redact_personal_data,
    )
    host, port = args.http if args.http else (None, None)
    daemon = Daemon(config, config_path=args.config, only=args.only, http_host=host, http_port=port)
    try:
        return asyncio.run(daemon.run())
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2


def _normalize(args: argparse.Namespace) -> int:
    import tempfile

    import orjson

    from router.blobs import BlobStore
    from router.connector import load_registry
    from router.envelope import encode
    from router.errors import OmniError

    spec = load_registry().get(args.type)
    if spec is None or spec.normalize is None:
        known = sorted(t for t, s in load_registry().items() if s.normalize is not None)
        print(f"no normalizer for type {args.type!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="omnirouter-blobs-") as tmp:
        blobs = BlobStore(args.blobs or tmp)
        try:
            envelope = spec.normalize(raw, args.channel or args.type, blobs)
        except OmniError as exc:
            print(f"cannot normalize {args.file}: {exc}", file=sys.stderr)
            return 2
    pretty = orjson.dumps(orjson.loads(encode(envelope)), option=orjson.OPT_INDENT_2)
    sys.stdout.buffer.write(pretty)
    sys.stdout.buffer.write(b"\n")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from router.config import load_config
    from router.errors import ConfigError, OmniError
    from router.logs import setup_logging
    from router.simulate import run

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    # Decisions go to stdout; keep the log quiet and out of the way.
    setup_logging(level="warning", fmt="console", stream=sys.stderr)
    try:
        if args.events == "-":
            return asyncio.run(run(config, sys.stdin, sys.stdout))
        with open(args.events, encoding="utf-8") as events:
            return asyncio.run(run(config, events, sys.stdout))
    except OSError as exc:
        print(f"cannot read {args.events}: {exc.strerror}", file=sys.stderr)
        return 2
    except OmniError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "normalize":
        return _normalize(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "check":
        from router.config import check

        return check(args.config)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
