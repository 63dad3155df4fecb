"""The `omnirouter` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        from router.config import check

        return check(args.config)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
