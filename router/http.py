"""The daemon's HTTP listener: health, readiness and Prometheus metrics.

Connectors that take webhooks (Telegram, phone CDRs) and the web chat add
their routes to the same application.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from router.errors import OmniError
from router.metrics import Metrics

log = structlog.get_logger(__name__)

# The daemon's own routes (the supervisor page: router.status.web); no connector takes them.
RESERVED = ("/healthz", "/readyz", "/metrics", "/status", "/status.json")

# Returns the names of the parts that are not ready; empty when all are.
ReadinessCheck = Callable[[], Awaitable[list[str]]]
# Returns the channels that are down, each with its reason (see `router.channels.Down`).
ChannelsDown = Callable[[], Mapping[str, Mapping[str, object]]]


def build_app(
    metrics: Metrics, readiness: ReadinessCheck, channels_down: ChannelsDown | None = None
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        missing = await readiness()
        if missing:
            body: dict[str, object] = {"status": "not ready", "waiting_for": missing}
            down = channels_down() if channels_down is not None else {}
            if down:
                body["channels_down"] = down
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready"})

    async def prometheus(_: web.Request) -> web.Response:
        resp = web.Response(body=metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app


class Routes:
    """`router.connector.HttpRoutes` on the daemon's application; one handler per route."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._taken: set[tuple[str, str]] = set()

    def add(
        self,
        method: str,
        path: str,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> None:
        key = (method.upper(), path)
        if key in self._taken or path in RESERVED:
            raise ValueError(f"HTTP route {method.upper()} {path} is already taken")
        self._taken.add(key)
        self._app.router.add_route(method, path, handler)


class ListenError(OmniError):
    """The HTTP address cannot be taken: the operator picks another (not retried here)."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HttpListener:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        self.host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            # asyncio's text repeats the address as a tuple; the reason alone reads better.
            # (A host that does not resolve has a negative errno: getaddrinfo's text, then.)
            errno = exc.errno or 0
            reason = (os.strerror(errno) if errno > 0 else exc.strerror or str(exc)).lower()
            address = _address(self.host, self.port)
            raise ListenError(
                f"cannot listen on {address}: {reason}; pick another with --http HOST:PORT"
                " or http.host and http.port in the config"
            ) from exc
        # Port 0 asks the OS for a free port; report the real one.
        for server in self._runner.addresses:
            if isinstance(server, tuple):
                self.port = int(server[1])
                break
        log.info("http listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
