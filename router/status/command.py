"""`omnirouter status`: what the supervisor page shows, as tables or JSON.

The floor (queues, agents, conversations at risk, today's incidents, dead outputs)
is read from the store, with the config loaded without channel secrets. What only
the daemon knows (channels' health, the last reload, dead letters since it started)
comes from its `/status.json` when it answers, with the supervisor password from
`OMNIROUTER_SUPERVISOR_PASSWORD`; otherwise the output says why it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

PASSWORD_ENV = "OMNIROUTER_SUPERVISOR_PASSWORD"  # noqa: S105 - a variable name
DAEMON_TIMEOUT = 3.0  # seconds; a daemon that does not answer by then is "not reachable"

EPILOG = f"""\
the daemon's part (channels, last reload) comes from its /status.json at the
config's http address (or --url), with the password in ${PASSWORD_ENV}.

exit status: 0 shown; 2 invalid config, or the store cannot be read
"""


def add_parser(sub: Any, default_config: str) -> None:
    status = sub.add_parser(
        "status",
        help="the floor now: queues, agents, conversations at risk, incidents, channels",
        description="What the supervisor page (/status) shows, from the store and the"
        " running daemon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("-c", "--config", default=default_config, help="config file")
    status.add_argument("--json", action="store_true", help="one JSON object (as /status.json)")
    status.add_argument(
        "--url", help="the running daemon, e.g. http://127.0.0.1:8080 (default: from the config)"
    )


def run(args: argparse.Namespace) -> int:
    from router.config import load_config
    from router.errors import ConfigError, OmniError
    from router.logs import setup_logging

    # The output is the tables or the JSON: the log stays quiet, on stderr.
    setup_logging(level="warning", fmt="console", stream=sys.stderr)

    try:
        config = load_config(args.config, channel_secrets=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        status = asyncio.run(_gather(config, args.url))
    except OmniError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import orjson

        from router.status.snapshot import as_json

        sys.stdout.buffer.write(orjson.dumps(as_json(status), option=orjson.OPT_INDENT_2))
        sys.stdout.buffer.write(b"\n")
    else:
        from router.status.table import show

        show(status, sys.stdout)
    return 0


async def _gather(config: Any, url: str | None) -> Any:
    from router.connector import load_registry
    from router.envelope import now_utc
    from router.status.snapshot import Status, take_floor
    from router.store import open_store

    store = await open_store(config.store.dsn(), create=False)
    try:
        floor = await take_floor(config, store, now_utc(), registry=load_registry())
    finally:
        await store.close()
    base = url or _daemon_url(config)
    runtime, note = await _ask_daemon(base) if base else (None, "the daemon's port is 0")
    return Status(floor=floor, runtime=runtime, runtime_note=note)


def _daemon_url(config: Any) -> str | None:
    host, port = config.http.host, config.http.port
    if port == 0:
        return None
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: ask locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _ask_daemon(base: str) -> tuple[Any, str | None]:
    """The daemon's runtime part, or None and why not."""
    import aiohttp

    from router.status.snapshot import runtime_from_json

    headers = {}
    password = os.environ.get(PASSWORD_ENV)
    if password:
        headers["Authorization"] = f"Bearer {password}"
    url = base.rstrip("/") + "/status.json"
    try:
        timeout = aiohttp.ClientTimeout(total=DAEMON_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as resp,
        ):
            if resp.status == 404:
                return (
                    None,
                    f"the daemon at {base} has no supervisor page (supervisor.password_hash)",
                )
            if resp.status == 401:
                why = "refused the password in" if password else "needs the password: set"
                return None, f"the daemon at {base} {why} ${PASSWORD_ENV}"
            if resp.status != 200:
                return None, f"the daemon at {base} answered HTTP {resp.status}"
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None, f"daemon not reachable at {base}"
    try:
        return runtime_from_json(body["runtime"]), None
    except (KeyError, TypeError, ValueError):
        return None, f"the daemon at {base} sent a status this command does not read"
