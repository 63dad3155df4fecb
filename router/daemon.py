"""The daemon: wires config, store, bus, the router's consumer, connectors and HTTP.

Start: store, bus and topics, HTTP, the router's consume loop, then the
channels. Stop (SIGTERM/SIGINT): intake first, then the consume loops finish
the record in hand and commit, then bus, store and HTTP close.
Reload (SIGHUP, or the config file changed): validate the file, create the rows
of agents it adds, then swap; a file that is invalid or cannot be applied changes
nothing, and the log says why.

Exit status of `run()`: 0 after a requested stop, 1 when a component failed or
the daemon could not start (a supervisor should start it again).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import BaseModel

from router.blobs import BlobStore
from router.bus import EmbeddedBus, KafkaBus
from router.bus.base import Bus, Topics
from router.channels import ChannelRunner, outbound_group
from router.config import Config, load_config
from router.config.people import SinkConfig
from router.connector import Connector, ConnectorSpec, Services, load_registry
from router.consume import ConsumeLoop
from router.envelope import now_utc
from router.errors import ConfigError, ConfigProblem, OmniError, StoreError
from router.http import HttpListener, ListenError, Routes, build_app
from router.inbound import InboundProcessor
from router.metrics import Known, Metrics
from router.outbox import OutboxPublisher
from router.retry import Backoff
from router.routing.engine import Engine
from router.routing.hours import hours_of, next_open
from router.status.snapshot import Reload, Runtime, Status, channel_lines, counted, take_floor
from router.status.web import add_status_routes
from router.store import Store, open_store
from router.store.conn import Conn
from router.store.floor import read_floor

log = structlog.get_logger(__name__)

ROUTER = "router"
STOP_GRACE_SECONDS = 8.0
CLOCK_SECONDS = 1.0
# Past a timer's due time when the clock wakes for it (the event loop may wake a hair early).
TIMER_SLACK_SECONDS = 0.005
# How often the config file is checked for changes (None: only on SIGHUP).
CONFIG_POLL_SECONDS = 2.0
PRUNE_EVERY_TICKS = 300  # published outbox rows are pruned every few minutes
LAG_EVERY_TICKS = 10
FLOOR_EVERY_TICKS = 5  # queues, agents and the outbox, for the metrics: 4 grouped counts
# Sections that are read once at start-up; a change to them needs a restart (logging is
# set up before the daemon starts; the connectors take the blobs settings when made).
RESTART_SECTIONS = ("bus", "store", "http", "logging", "blobs", "channels")
EXIT_STOPPED = 0  # stopped on request (SIGTERM, SIGINT)
EXIT_FAILED = 1  # a component failed, or start-up did: restart me


def sinks_of(config: Config) -> dict[str, SinkConfig]:
    return {a.id: a.sink for a in config.agents}


def queues_of(config: Config) -> list[str]:
    return [q.name for q in config.queues]


def open_bus(config: Config) -> Bus:
    bus = config.bus
    if bus.backend == "kafka":
        k = bus.kafka
        return KafkaBus(
            k.bootstrap_servers,
            partitions=bus.partitions,
            replication_factor=k.replication_factor,
            client_id=k.client_id,
            instance_id=k.instance_id,
            max_record_bytes=bus.max_record_bytes,
            security_protocol=k.security_protocol,
            ssl_context=ssl.create_default_context() if "SSL" in k.security_protocol else None,
            sasl_mechanism=k.sasl_mechanism or "PLAIN",
            sasl_plain_username=k.sasl_username,
            sasl_plain_password=(
                k.sasl_password.get_secret_value() if k.sasl_password is not None else None
            ),
        )
    path = Path(bus.embedded.path)
    return EmbeddedBus(path, partitions=bus.partitions, max_record_bytes=bus.max_record_bytes)


def settle_heap() -> None:
    """Collect the start-up garbage, then leave what is left (config, models, the language
    model, the agents' board) out of every later collection. Without it a full collection
    walks those 200,000-odd objects each time, about 120 ms with the process held; after,
    it walks only what the work itself keeps. Frozen objects are still freed when their
    last reference goes (a reload's old config), but a cycle among them never is: once per
    process, so a process that starts many daemons (the tests) must not."""
    gc.collect()
    gc.freeze()


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        only: Collection[str] | None = None,
        http_host: str | None = None,
        http_port: int | None = None,
        registry: dict[str, ConnectorSpec] | None = None,
        watch_config: float | None = CONFIG_POLL_SECONDS,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self.watch_config = watch_config
        self.only = set(only) if only else None
        if self.only is not None:
            known = {ROUTER} | {c.name for c in config.channels}
            unknown = sorted(self.only - known)
            if unknown:
                where = str(config_path or "<config>")
                raise ConfigError(
                    [
                        ConfigProblem(
                            where,
                            None,
                            "--only",
                            f"unknown part {name!r}; known: {', '.join(sorted(known))}",
                        )
                        for name in unknown
                    ]
                )
        self.http_host = http_host or config.http.host
        self.http_port = config.http.port if http_port is None else http_port
        self.registry = registry if registry is not None else load_registry()
        self.metrics = Metrics()
        self.topics = Topics(prefix=config.bus.topic_prefix)
        self.bus: Bus | None = None
        self.store: Store | None = None
        self.http: HttpListener | None = None
        self.router_loop: ConsumeLoop | None = None
        self.engine: Engine | None = None
        self.outbox: OutboxPublisher | None = None
        self.channels: list[ChannelRunner] = []
        self._connectors: list[tuple[str, Connector]] = []
        self._sinks: dict[str, SinkConfig] = {}  # lent to connectors, current after reloads
        self._queues: list[str] = []  # the same
        self._topics_made: frozenset[str] = frozenset()  # what the bus was asked to create
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[bool]] = set()  # SIGHUP's, held until done
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._ready = False
        self.failure: str | None = None  # what stopped the daemon when it was not asked to
        self.started_at = now_utc()
        self.last_reload: Reload | None = None  # shown on the supervisor page

    # -- selection ---------------------------------------------------------

    def _wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def _enabled_channels(self) -> list[tuple[str, ConnectorSpec, BaseModel | None]]:
        chosen: list[tuple[str, ConnectorSpec, BaseModel | None]] = []
        for channel in self.config.channels:
            if not channel.enabled or not self._wanted(channel.name):
                continue
            spec = self.registry.get(channel.type)
            if spec is None or spec.factory is None:
                # load_config refuses this already; a registry given by a caller may differ.
                where = str(self.config_path or "<config>")
                problem = ConfigProblem(
                    where,
                    None,
                    f"channels.{channel.name}",
                    f"no runtime for connector type {channel.type!r} in this build",
                )
                raise ConfigError([problem])
            chosen.append((channel.name, spec, channel.settings))
        return chosen

    # -- lifecycle ---------------------------------------------------------

    async def readiness(self) -> list[str]:
        missing = []
        if not self._ready:
            missing.append("startup")
        if self.bus is None or not await self.bus.ping():
            missing.append("bus")
        if self.store is None or not await self.store.ping():
            missing.append("store")
        missing.extend(f"channel {name}" for name in self.channels_down())
        return missing

    def channels_down(self) -> dict[str, dict[str, object]]:
        """The channels that are down, with why, since when, and their next attempt."""
        return {r.name: r.down.as_dict() for r in self.channels if r.down is not None}

    async def status(self) -> Status:
        """The supervisor's snapshot: the store's part and this process's own."""
        if self.store is None:
            raise StoreError("the store is not open yet", retriable=True)
        engine = self.engine
        floor = await take_floor(
            self.config,
            self.store,
            now_utc(),
            registry=self.registry,
            routing=engine.ctx if engine is not None else None,
        )
        return Status(floor=floor, runtime=self.runtime())

    def runtime(self) -> Runtime:
        return Runtime(
            started_at=self.started_at,
            channels=channel_lines(self.config, self.channels, self._wanted),
            reload=self.last_reload,
            dead_letters=counted(self.metrics.dead_letters),
        )

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested")
        self._stop.set()

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until stopped; `EXIT_STOPPED` after a requested stop, `EXIT_FAILED` when a
        component failed or start-up did. A config this build cannot run raises
        `ConfigError` (the command line exits 2), an HTTP address it cannot take
        `ListenError` (one line, exit 1). A run that owns the process's signals (the
        command line's) also freezes its start-up heap once ready (see `settle_heap`)."""
        loop = asyncio.get_running_loop()
        if install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload_soon)
        try:
            await self._start_all()
            self._ready = True
            log.info("daemon ready", bus=self.config.bus.backend, store=self.store_backend)
            if install_signals:
                settle_heap()
            await self._stop.wait()
        except (ConfigError, ListenError):
            raise  # the command line says what to fix, in one line or a list
        except Exception as exc:
            # Start-up failed (the store or the bus unreachable, the port taken): say
            # what, then stop what did start. Our own errors say enough; others are bugs.
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "daemon failed to start", error=error, exc_info=not isinstance(exc, OmniError)
            )
            self._failed("start-up")
        finally:
            self._ready = False
            await self._shutdown()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        if self.failure is not None:
            log.error("daemon stopped after a failure", failed=self.failure, exit=EXIT_FAILED)
            return EXIT_FAILED
        log.info("daemon stopped")
        return EXIT_STOPPED

    def _failed(self, what: str) -> None:
        if self.failure is None:
            self.failure = what
        self._stop.set()

    async def _start_all(self) -> None:
        app = build_app(self.metrics, self.readiness, self.channels_down)
        add_status_routes(app, lambda: self.config.supervisor, self.status)
        self.started_at = now_utc()
        self.store = await open_store(self.config.store.dsn())
        self._build_connectors(Routes(app))  # they add their routes before it starts
        self._log_channels()
        self.http = HttpListener(app, self.http_host, self.http_port)
        await self.http.start()
        await self._start()
        if self.config_path is not None and self.watch_config is not None:
            # The file as it is now, not when the task first runs: a change made in
            # between would otherwise be the baseline, and never reloaded.
            seen = _file_signature(self.config_path)
            self._spawn(self._watch_config(self.config_path, self.watch_config, seen), "config")

    @property
    def store_backend(self) -> str:
        return self.store.backend if self.store is not None else "none"

    def _build_connectors(self, routes: Routes) -> None:
        assert self.store is not None
        self._sinks.update(sinks_of(self.config))
        self._queues[:] = queues_of(self.config)
        services = Services(
            blobs=BlobStore(self.config.blobs.path, self.config.blobs.max_attachment_bytes),
            checkpoints=self.store,
            http=routes,
            sinks=self._sinks,
            opens_at=self._opens_at,
            queues=self._queues,
        )
        for name, spec, settings in self._enabled_channels():
            assert spec.factory is not None
            self._connectors.append((name, spec.factory(name, settings, services)))

    def _topics_of(self, config: Config) -> frozenset[str]:
        """Every topic `config` writes to: inbound, dead letters, each channel's outbound,
        and the agents' tools (one topic per sink channel or type)."""
        return frozenset(
            [self.topics.inbound, self.topics.dlq]
            + [self.topics.outbound(c.name) for c in config.channels]
            + [self.topics.agent(a.sink.channel or a.sink.type) for a in config.agents]
        )

    async def _make_topics(self, config: Config) -> None:
        """Topics a reloaded config adds (a channel its connectors' process runs now, a new
        sink): made now, so its outputs are published rather than dead-lettered."""
        new = self._topics_of(config) - self._topics_made
        if not new or self.bus is None:
            return
        try:
            await self.bus.ensure_topics(sorted(new))
        except Exception as exc:  # the bus: its outputs wait in the outbox, dead-lettered
            log.warning(
                "topics of the reloaded config not made", topics=sorted(new), error=_why(exc)
            )
            return
        self._topics_made |= new
        log.info("topics made for the reloaded config", topics=sorted(new))

    def _opens_at(self, channel: str, now: datetime) -> datetime:
        """The channel's next open moment by the current config's business hours."""
        return next_open(hours_of(self.config, channel), now)

    async def _start(self) -> None:
        assert self.store is not None
        self.bus = open_bus(self.config)
        await self.bus.start()
        self._topics_made = self._topics_of(self.config)
        await self.bus.ensure_topics(sorted(self._topics_made))
        self._know()
        if self._wanted(ROUTER):
            self.engine = Engine(self.config, self.store, self.topics, registry=self.registry)
            await self.engine.start(now_utc())
            self.engine.on_incidents = self._count_incidents
            self.metrics.agents_unreachable.set(len(self.engine.ctx.unreachable))
            self._warn_unreachable()
            self.outbox = OutboxPublisher(
                self.store,
                self.bus,
                self.topics,
                known_topics=lambda: self._topics_made,
                on_dead=lambda source: self.metrics.dead_letters.labels(source=source).inc(),
                on_wait=lambda topic: self.metrics.outbox_retries.labels(topic=topic).inc(),
            )
            await self.outbox.start()
            await self.outbox.flush()  # outputs a previous run committed but did not publish
            processor = InboundProcessor(
                bus=self.bus,
                topics=self.topics,
                engine=self.engine,
                outbox=self.outbox,
                metrics=self.metrics,
            )
            self.router_loop = ConsumeLoop(
                bus=self.bus,
                topics=self.topics,
                group=self.config.bus.kafka.group_id,
                subscribe=[self.topics.inbound],
                handler=processor.handle,
                metrics=self.metrics,
                after_batch=processor.after_batch,
                handle_batch=processor.handle_batch,
            )
            self._spawn(self.router_loop.run(), "router")
            await self._started(self.router_loop)
            self._spawn(self._clock(), "clock")
            self._spawn(self._chores(), "chores")
        channels = {c.name: c for c in self.config.channels}
        for name, connector in self._connectors:
            reconnect = channels[name].reconnect
            runner = ChannelRunner(
                name=name,
                connector=connector,
                bus=self.bus,
                topics=self.topics,
                metrics=self.metrics,
                reconnect=Backoff(
                    base=reconnect.base.total_seconds(),
                    cap=reconnect.cap.total_seconds(),
                    attempts=reconnect.attempts,
                ),
                after_refusal=reconnect.after_refusal.total_seconds(),
                max_in_flight=channels[name].max_in_flight,
                serves_agents=any(a.sink.channel == name for a in self.config.agents),
            )
            self.channels.append(runner)
            self._spawn(runner.outbound.run(), f"outbound:{name}")
            self._tasks.append(runner.start_intake())

    async def _clock(self) -> None:
        """Due timers and shift starts. Between ticks (once a second) it wakes when the next
        timer is due, so a timer fires on time rather than up to a tick late; the floor's
        chores (`_chores`) run in their own loop, so none of them can make a timer wait."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self._stop.is_set():
            now = now_utc()
            try:
                if loop.time() >= next_tick:
                    next_tick = loop.time() + CLOCK_SECONDS
                    assert self.engine is not None
                    await self.engine.clock_tick(now)
                await self._fire(now)
                wait = await self._until_due(next_tick - loop.time())
            except OmniError as exc:
                log.warning("clock tick failed", error=str(exc), retriable=exc.retriable)
                wait = next_tick - loop.time()
            await self._pause(wait)

    async def _chores(self) -> None:
        """Once a second: the outbox rows an earlier flush could not publish; now and then
        the floor's metrics (queues, agents, the outbox), consumer lag and pruning."""
        ticks = 0
        while not self._stop.is_set():
            try:
                await self._chore(now_utc(), ticks)
            except OmniError as exc:
                log.warning("clock chores failed", error=str(exc), retriable=exc.retriable)
            ticks += 1
            await self._pause(CLOCK_SECONDS)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the daemon stops."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            pass

    async def _chore(self, now: datetime, ticks: int) -> None:
        assert self.outbox is not None and self.store is not None
        await self.outbox.flush()  # rows an earlier flush could not publish
        if ticks % FLOOR_EVERY_TICKS == 0:
            agent_ids = {a.id for a in self.config.agents}
            self.metrics.set_floor(await read_floor(self.store, now, agent_ids))
        if ticks % PRUNE_EVERY_TICKS == 0:
            await self.outbox.prune(now)
        if ticks % LAG_EVERY_TICKS == 0:
            for consume_loop in self._loops():
                lag = await consume_loop.lag()
                self.metrics.consumer_lag.labels(group=consume_loop.group).set(lag)
            self.metrics.set_unconsumed(await self._unconsumed_deliveries())

    async def _fire(self, now: datetime) -> None:
        """The timers that came due: their records written and leased in one turn at the
        store, then published at once."""
        engine = self.engine
        assert engine is not None and self.outbox is not None

        async def fire(conn: Conn) -> int:
            return await engine.fire_due_timers(now, conn=conn)

        await self.outbox.write_and_publish(fire, self.topics.inbound)

    async def _until_due(self, until_tick: float) -> float:
        """Seconds to sleep: to the next tick, or to the next timer's due time if sooner (a
        timer already overdue, one the last pass had no room for, waits for the tick)."""
        assert self.engine is not None
        due = await self.engine.next_timer_due()
        if due is None:
            return until_tick
        until_due = (due - now_utc()).total_seconds()
        if until_due <= 0:
            return until_tick
        return min(until_tick, until_due + TIMER_SLACK_SECONDS)

    # -- metrics -----------------------------------------------------------

    def _know(self) -> None:
        """Tell the metrics the label values the config names (at start and on reload)."""
        config = self.config
        channels = [c.name for c in config.channels]
        router = self._wanted(ROUTER)
        self.metrics.know(
            Known(
                channels=tuple(channels),
                queues=tuple(queues_of(config)) if router else (),
                channel_types=tuple(sorted({c.type for c in config.channels})) if router else (),
                # records of the topics consumed, inputs of channels, outputs of the outbox
                dead_letter_sources=(
                    *sorted(self._topics_made - {self.topics.dlq}),
                    *channels,
                    "outbox",
                ),
                topics=tuple(sorted(self._topics_made)) if router else (),
                agents=tuple(a.id for a in config.agents) if router else (),
                floor=router,
            ),
            running=[name for name, _ in self._connectors],
        )

    async def _unconsumed_deliveries(self) -> dict[str, int]:
        """Per agent delivery topic, the records its sink channel's group has not sent,
        whether that channel runs in this process, another, or nowhere."""
        assert self.bus is not None
        backlog: dict[str, int] = {}
        for sink in sorted({a.sink.channel or a.sink.type for a in self.config.agents}):
            topic = self.topics.agent(sink)
            if topic in self._topics_made:  # a sink a reload added has no topic until restart
                backlog.update(await self.bus.backlog(outbound_group(sink), [topic]))
        return backlog

    def _count_incidents(self, kinds: Sequence[str]) -> None:
        for kind in kinds:
            self.metrics.incidents.labels(kind=kind).inc()

    def _loops(self) -> list[ConsumeLoop]:
        loops = [r.outbound for r in self.channels]
        if self.router_loop is not None:
            loops.append(self.router_loop)
        return loops

    async def _started(self, loop: ConsumeLoop) -> None:
        waiter = asyncio.ensure_future(loop.started.wait())
        await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            for task in self._tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    def _spawn(self, coro: object, name: str) -> None:
        async def guarded() -> None:
            try:
                await coro  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                # A consume loop only dies on a bus failure it could not ride out.
                log.exception("component failed; stopping the daemon", component=name)
                self._failed(name)
                raise

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def _shutdown(self) -> None:
        # 0. A reload in progress would swap a config into a closing engine.
        for reload in self._reloads:
            reload.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        # 1. Stop intake so no new work arrives.
        for runner in self.channels:
            await runner.stop_intake()
        # 2. Let the consume loops finish the record in hand and commit.
        for consume_loop in self._loops():
            consume_loop.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                log.warning("component did not stop in time; cancelling", component=task.get_name())
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # 3. Close the backends; one failing to close must not keep the others open.
        closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if self.bus is not None:
            closers.append(("bus", self.bus.stop))
        if self.store is not None:
            closers.append(("store", self.store.close))
        if self.http is not None:
            closers.append(("http", self.http.stop))
        for name, close in closers:
            try:
                await close()
            except Exception as exc:
                log.error("close failed", component=name, error=f"{type(exc).__name__}: {exc}")
                self._failed(f"closing {name}")

    # -- reload ------------------------------------------------------------

    async def _watch_config(
        self, path: Path, every: float, seen: tuple[int, int, int] | None
    ) -> None:
        """Reload when the file changes from `seen`: editors, config management, Kubernetes
        ConfigMaps (whose symlink swap changes what the path points to, which stat follows)."""
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=every)
                return
            except TimeoutError:
                pass
            now = _file_signature(path)
            if now is None or now == seen:
                continue  # unchanged, or mid-replace: look again next time
            seen = now
            log.info("config file changed; reloading", file=str(path))
            await self.reload()

    def reload_soon(self) -> None:
        """SIGHUP: reload in a task the daemon holds (and cancels when it stops)."""
        if self._stop.is_set():
            log.info("reload ignored: the daemon is stopping")
            return
        task = asyncio.create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[bool]) -> None:
        self._reloads.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("config reload failed", error=_why(exc))  # `reload` should not raise

    async def reload(self) -> bool:
        """Validate the config file again and swap it in; keep the running one if the
        file is invalid or cannot be applied. Never raises: a reload comes from outside
        (a signal, a file change) with nobody to raise to, and must not stop the daemon."""
        if self.config_path is None:
            log.warning("reload requested but the daemon has no config file")
            return False
        async with self._reload_lock:  # a signal and a file change at once: one after the other
            try:
                return await self._reload(self.config_path)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.config_reloads.labels(result="failed").inc()
                self.last_reload = Reload(at=now_utc(), result="failed", detail=(_why(exc),))
                log.error(
                    "config reload failed; keeping the running config",
                    file=str(self.config_path),
                    error=_why(exc),
                )
                return False

    async def _reload(self, path: Path) -> bool:
        try:
            new = await asyncio.to_thread(load_config, path, registry=self.registry)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
        except Exception as exc:  # a bug in validation: still a refused file
            problems = [f"{path}: cannot be validated ({_why(exc)})"]
        else:
            problems = []
        if problems:
            self.metrics.config_reloads.labels(result="invalid").inc()
            self.last_reload = Reload(at=now_utc(), result="invalid", detail=tuple(problems))
            log.error(
                "config reload rejected; keeping the running config",
                file=str(path),
                problems=problems,
            )
            return False
        needs_restart = [
            section
            for section in RESTART_SECTIONS
            if getattr(new, section) != getattr(self.config, section)
        ]
        if self.engine is not None:
            # Rows for new agents first; if the store fails, this raises, nothing swapped.
            await self.engine.configure(new, now_utc())
        self.config = new
        await self._make_topics(new)
        self._sinks.clear()  # in place: the connectors hold this mapping
        self._sinks.update(sinks_of(new))
        self._queues[:] = queues_of(new)
        self.metrics.config_reloads.labels(result="ok").inc()
        self.last_reload = Reload(
            at=now_utc(),
            result="ok",
            detail=tuple(f"{section} changed: a restart applies it" for section in needs_restart),
        )
        self._know()
        if self.engine is not None:
            self.metrics.agents_unreachable.set(len(self.engine.ctx.unreachable))
        log.info("config reloaded", file=str(path), needs_restart=needs_restart)
        self._warn_unreachable()
        for runner in self.channels:  # a down channel's cause may be fixed now: try it
            runner.retry_now()
        return True

    def _log_channels(self) -> None:
        """Say at start which channels this process runs; warn when the config enables none
        (nothing comes in, nothing reaches an agent)."""
        enabled = self.config.enabled_channels
        running = [f"{c.name} ({c.type})" for c in enabled if self._wanted(c.name)]
        disabled = [c.name for c in self.config.channels if not c.enabled]
        if running:
            log.info("channels enabled", channels=running, disabled=disabled)
        elif enabled:  # `--only router`: they run in other processes
            log.info("channels enabled: none in this process", only=sorted(self.only or ()))
        else:
            where = str(self.config_path or "the config")
            log.warning(
                "no channel enabled: nothing comes in and no agent is reached",
                disabled=disabled,
                hint=f"give a channel its secrets and set `enabled: true` in {where}",
            )

    def _warn_unreachable(self) -> None:
        """Say once per start or reload who gets no work because nothing reaches them."""
        if self.engine is None or not self.config.enabled_channels:
            return  # with no channel at all, the one line of `_log_channels` says it
        for agent_id, cause in sorted(self.engine.ctx.unreachable.items()):
            log.warning("agent unreachable; never assigned", agent=agent_id, cause=cause)


def _why(exc: BaseException) -> str:
    """An unexpected exception in a log line: our own errors say why; a library's text
    may quote values from the config (a secret), so only its type is given."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, OmniError) else type(exc).__name__


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
