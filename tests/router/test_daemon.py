"""The daemon in-process, with the in-memory connector registered under `type: memory`."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import urllib.request
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import structlog.testing

import router.daemon as daemon_module
from router.bus import EmbeddedBus
from router.config import parse_config
from router.connector import DONE, Connector, Services, load_registry
from router.connector.testing import MEMORY_TYPE, MemoryChannelConfig, MemoryConnector, memory_spec
from router.daemon import Daemon
from router.envelope import Envelope, Sender, encode, envelope_id
from router.errors import BusError, StoreError
from router.store import open_store
from router.store import routing as routing_db
from tests.harness.common import eventually
from tests.harness.daemon import break_consume_loop, embedded_config, get, running


class Registry:
    """The installed connectors plus `type: memory`; the memory connectors built, by name."""

    def __init__(self) -> None:
        self.built: dict[str, MemoryConnector] = {}
        self.specs = {**load_registry(), MEMORY_TYPE: memory_spec(self.built)}


def message(channel: str, native: str, thread: str = "t1") -> Envelope:
    return Envelope(
        id=envelope_id(channel, native),
        kind="message",
        direction="in",
        channel=channel,
        channel_type="memory",
        thread_key=thread,
        sender=Sender(address="visitor-1", name="Ana"),
        received_at=datetime.now(UTC),
        text=f"hello {native}",
    )


REFUSED = "login refused: wrong password"


def config_text(tmp: Path, *, fail_sends: bool = False, refuse_start: str | None = None) -> str:
    flags = f"fail_sends: {str(fail_sends).lower()}"
    if refuse_start is not None:
        flags += f", refuse_start: {refuse_start!r}"
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: chat
    type: memory
    memory: {{{flags}}}
"""
    )


def running_chat(
    tmp: Path,
    registry: Registry,
    *,
    fail_sends: bool = False,
    refuse_start: str | None = None,
    **kw: Any,
) -> AbstractAsyncContextManager[Daemon]:
    """The daemon on `config_text` (one memory channel, `chat`), running for the block."""
    text = config_text(tmp, fail_sends=fail_sends, refuse_start=refuse_start)
    cfg = parse_config(text, registry=registry.specs)
    return running(cfg, registry=registry.specs, **kw)


async def stored_ids(tmp: Path) -> set[str]:
    store = await open_store(f"sqlite:///{tmp}/store.sqlite3")
    try:
        async with store.transaction(readonly=True) as conn:
            rows = await conn.execute(sa.text("SELECT id FROM messages"))
            return {r[0] for r in rows}
    finally:
        await store.close()


async def test_intake_reaches_the_store_and_is_acked_after_publish(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:
        chat = reg.built["chat"]
        first, dup = message("chat", "m1"), message("chat", "m1")
        chat.offer(first)
        chat.offer(dup)  # the channel re-delivered it
        await eventually(lambda: len(chat.acks) == 2)
        await eventually(
            lambda: (
                daemon.metrics.messages_in.labels(channel="chat", kind="message")._value.get() == 2
            )
        )
        assert daemon.metrics.duplicates._value.get() == 1
    assert await stored_ids(tmp_path) == {first.id}


async def test_outbound_topic_is_sent_on_the_channel(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:
        reply = message("chat", "r1").model_copy(update={"kind": "reply", "direction": "out"})
        assert daemon.bus is not None
        await daemon.bus.produce(daemon.topics.outbound("chat"), reply.bus_key(), encode(reply))
        chat = reg.built["chat"]
        await eventually(lambda: len(chat.sent) == 1)
        assert chat.sent[0] == reply


async def test_failed_send_is_dead_lettered_not_retried(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg, fail_sends=True) as daemon:
        reply = message("chat", "r2").model_copy(update={"kind": "reply", "direction": "out"})
        assert daemon.bus is not None
        await daemon.bus.produce(daemon.topics.outbound("chat"), reply.bus_key(), encode(reply))
        await eventually(
            lambda: (
                daemon.metrics.dead_letters.labels(source="omni.outbound.chat")._value.get() == 1
            )
        )
        await asyncio.sleep(0.3)
        assert len(reg.built["chat"].sent) == 1
    dlq = await read_topic(tmp_path, "omni.dlq")
    assert len(dlq) == 1
    assert "the channel refuses every send" in orjson.loads(dlq[0])["reason"]


async def test_bad_inbound_record_goes_to_dlq_and_router_keeps_going(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:
        assert daemon.bus is not None
        await daemon.bus.produce(daemon.topics.inbound, b"k", b'{"v": 1, "kind": "message"}')
        good = message("chat", "after-bad")
        reg.built["chat"].offer(good)
        await eventually(lambda: reg.built["chat"].acks == [(good.id, DONE)])
        await eventually(
            lambda: (
                daemon.metrics.messages_in.labels(channel="chat", kind="message")._value.get() == 1
            )
        )
    [dead] = await read_topic(tmp_path, "omni.dlq")
    body = orjson.loads(dead)
    assert body["reason"].startswith("invalid envelope")
    assert "thread_key" in body["reason"]
    assert body["value"] == '{"v": 1, "kind": "message"}'
    assert await stored_ids(tmp_path) == {good.id}


async def test_rejected_input_is_dead_lettered_then_acked(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg):
        chat = reg.built["chat"]
        chat.offer_raw(b"native-77", native_id="native-77")
        await eventually(lambda: [n for n, _ in chat.acks] == ["native-77"])
        # Refused, not done: the channel forgets it (an HTTP intake answers 422).
        [(_, refused)] = chat.acks
        assert not refused.done and not refused.retriable
        assert chat.pending == []
    [dead] = await read_topic(tmp_path, "omni.dlq")
    body = orjson.loads(dead)
    assert body["reason"] == refused.error and body["reason"].startswith("not JSON")
    assert body["source"] == {"channel": "chat"}
    assert body["native_id"] == "native-77"


async def test_failing_connector_is_restarted_and_daemon_stays_up(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:
        chat = reg.built["chat"]
        chat.break_intake(ConnectionResetError("peer went away"))
        await eventually(lambda: chat.starts >= 2)
        later = message("chat", "after-restart")
        chat.offer(later)
        await eventually(lambda: chat.acks == [(later.id, DONE)])
        assert await daemon.readiness() == []


async def test_a_refused_channel_is_down_on_readyz_with_the_reason_until_a_reload(
    tmp_path: Path,
) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path, refuse_start=REFUSED))
    async with running_chat(
        tmp_path, reg, refuse_start=REFUSED, config_path=path, watch_config=None
    ) as daemon:
        assert daemon.http is not None
        url = f"http://127.0.0.1:{daemon.http.port}"
        await eventually(lambda: daemon.channels_down() != {})
        status, body = await asyncio.to_thread(get, url + "/readyz")
        assert status == 503
        ready = orjson.loads(body)
        assert ready["waiting_for"] == ["channel chat"]
        assert ready["channels_down"]["chat"]["reason"] == REFUSED
        assert ready["channels_down"]["chat"]["retriable"] is False
        _, metrics = await asyncio.to_thread(get, url + "/metrics")
        assert (
            b'omnirouter_connector_down{channel="chat",reason="login refused: wrong password"} 1.0'
            in metrics
        )
        chat = reg.built["chat"]
        assert chat.starts == 1  # not tried again before `reconnect.after_refusal`
        chat.fail_starts(None)  # fixed (a password file, say); the operator reloads
        assert await daemon.reload() is True
        await eventually(lambda: daemon.channels_down() == {})
        assert chat.starts == 2
        assert await asyncio.to_thread(get, url + "/readyz") == (200, b'{"status": "ready"}')
        _, metrics = await asyncio.to_thread(get, url + "/metrics")
        assert b"omnirouter_connector_down{" not in metrics


async def test_only_router_runs_no_connector(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg, only=["router"]) as daemon:
        assert reg.built == {}
        assert daemon.router_loop is not None


async def test_only_a_channel_runs_no_router(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg, only=["chat"]) as daemon:
        assert daemon.router_loop is None
        assert "chat" in reg.built


async def test_http_endpoints(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:
        assert daemon.http is not None
        base = f"http://127.0.0.1:{daemon.http.port}"

        def get(path: str) -> tuple[int, bytes]:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, resp.read()

        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
        status, body = await asyncio.to_thread(get, "/readyz")
        assert status == 200 and orjson.loads(body)["status"] == "ready"
        # Each loop's lag is set in turn (the channels' outbound loops first): wait for the
        # router's own, not the first one set.
        await eventually(lambda: ("omnirouter-router",) in daemon.metrics.consumer_lag._metrics)
        status, body = await asyncio.to_thread(get, "/metrics")
        assert b"omnirouter_connector_up" in body
        assert b'omnirouter_consumer_lag_records{group="omnirouter-router"} 0.0' in body
        status, body = await asyncio.to_thread(get, "/memory/chat/ping")
        assert (status, body) == (200, b"pong from chat")


async def test_reload_swaps_valid_config_and_keeps_running_one_on_error(tmp_path: Path) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path))
    async with running_chat(tmp_path, reg, config_path=path, watch_config=None) as daemon:
        before = daemon.config
        path.write_text(config_text(tmp_path) + "surprise: 1\n")
        assert await daemon.reload() is False
        assert daemon.config is before
        path.write_text(config_text(tmp_path, fail_sends=True))
        assert await daemon.reload() is True
        assert daemon.config is not before
        assert daemon.metrics.config_reloads.labels(result="invalid")._value.get() == 1


async def test_a_reload_says_which_start_up_sections_changed(tmp_path: Path) -> None:
    """Logging and attachment storage are set up at start: a reload that changes them
    says a restart applies them, as it does for the bus, store, listener and channels."""
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path))
    async with running_chat(tmp_path, reg, config_path=path, watch_config=None) as daemon:
        blobs = f'blobs: {{path: "{tmp_path}/blobs"}}'
        assert blobs in config_text(tmp_path)
        moved = config_text(tmp_path).replace(blobs, f'blobs: {{path: "{tmp_path}/moved"}}')
        path.write_text(moved + "logging:\n  level: error\n")
        assert await daemon.reload() is True
        assert daemon.last_reload is not None
        assert daemon.last_reload.detail == (
            "logging changed: a restart applies it",
            "blobs changed: a restart applies it",
        )


async def test_connectors_see_the_queues_of_the_running_config(tmp_path: Path) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path) + "queues:\n  - name: billing\n")
    cfg = parse_config(path.read_text(), registry=reg.specs)
    async with running(cfg, registry=reg.specs, config_path=path, watch_config=None) as daemon:
        services = reg.built["chat"].services
        assert services is not None
        assert list(services.queues) == ["billing"]
        path.write_text(config_text(tmp_path) + "queues:\n  - name: returns\n  - name: billing\n")
        assert await daemon.reload() is True
        assert list(services.queues) == ["returns", "billing"]


async def test_a_changed_config_file_is_reloaded_without_a_signal(tmp_path: Path) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path))
    async with running_chat(tmp_path, reg, config_path=path, watch_config=0.05) as daemon:
        first = daemon.config
        reloads = daemon.metrics.config_reloads
        path.write_text(config_text(tmp_path) + "surprise: 1\n")
        await eventually(lambda: reloads.labels(result="invalid")._value.get() == 1)
        assert daemon.config is first
        await asyncio.sleep(0.3)  # an unchanged (still invalid) file is not read again
        assert reloads.labels(result="invalid")._value.get() == 1
        path.write_text(config_text(tmp_path, fail_sends=True))
        await eventually(lambda: daemon.config is not first)
        assert reloads.labels(result="ok")._value.get() == 1
        path.unlink()  # gone (or mid-replace): the running config stays
        await asyncio.sleep(0.3)
        assert reloads.labels(result="invalid")._value.get() == 1


async def read_topic(tmp: Path, topic: str) -> list[bytes]:
    bus = EmbeddedBus(tmp / "bus.sqlite3", partitions=6)
    await bus.start()
    try:
        consumer = await bus.consumer("test-reader", [topic])
        out: list[bytes] = []
        for _ in range(5):
            out += [r.value for r in await consumer.fetch(timeout=0.2)]
        await consumer.close()
        return out
    finally:
        await bus.stop()


@pytest.fixture(autouse=True)
def _quiet_structlog():
    yield


async def test_channel_serving_agents_sends_their_deliveries_too(tmp_path: Path) -> None:
    from router.bus.base import Topics
    from router.channels import ChannelRunner
    from router.metrics import Metrics

    bus = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2)
    await bus.start()
    topics = Topics(prefix="omni.")
    connector = MemoryConnector("chat")
    runner = ChannelRunner(
        name="chat",
        connector=connector,
        bus=bus,
        topics=topics,
        metrics=Metrics(),
        serves_agents=True,
    )
    task = asyncio.create_task(runner.outbound.run())
    try:
        to_customer = message("chat", "c1").model_copy(update={"kind": "reply", "direction": "out"})
        to_agent = message("chat", "a1").model_copy(
            update={"direction": "out", "meta": {"delivery": {"event": "assigned"}}}
        )
        await bus.produce(topics.outbound("chat"), to_customer.bus_key(), encode(to_customer))
        await bus.produce(topics.agent("chat"), to_agent.bus_key(), encode(to_agent))
        await eventually(lambda: len(connector.sent) == 2)
        assert {e.id for e in connector.sent} == {to_customer.id, to_agent.id}
    finally:
        runner.outbound.stop()
        await asyncio.wait_for(task, 10)
        await bus.stop()


async def test_input_too_large_for_the_bus_is_dead_lettered_and_intake_goes_on(
    tmp_path: Path,
) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg):
        chat = reg.built["chat"]
        huge = message("chat", "huge").model_copy(update={"text": "x" * 1_100_000})
        after = message("chat", "after")
        chat.offer(huge)
        chat.offer(after)
        await eventually(lambda: [n for n, _ in chat.acks] == [huge.id, after.id])
        assert chat.starts == 1  # refused, not a connector failure: offered once, not again
        (_, refused), (_, done) = chat.acks
        assert not refused.done and not refused.retriable
        assert "max_record_bytes" in (refused.error or "")
        assert done.done
    [dead] = await read_topic(tmp_path, "omni.dlq")
    body = orjson.loads(dead)
    assert "over the bus's max_record_bytes (1000000)" in body["reason"]
    assert body["native_id"] == huge.id
    assert await stored_ids(tmp_path) >= {after.id}


# --- bad config files, failures and exit statuses --------------------------------------


async def test_control_characters_in_the_watched_file_keep_the_running_config(
    tmp_path: Path,
) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    good = config_text(tmp_path)
    path.write_text(good)
    async with running_chat(tmp_path, reg, config_path=path, watch_config=0.05) as daemon:
        first = daemon.config
        reloads = daemon.metrics.config_reloads
        # A NUL, and an ESC as a coloured terminal pastes it.
        for n, pasted in enumerate(("a\x00b", "\x1b[31mred\x1b[0m"), 1):
            path.write_text(good + f"skills:\n  - name: x\n    description: {pasted}\n")
            await eventually(lambda n=n: reloads.labels(result="invalid")._value.get() == n)
            assert daemon.config is first
            assert daemon.failure is None and await daemon.readiness() == []
        path.write_text(config_text(tmp_path, fail_sends=True))  # a later valid edit is taken
        await eventually(lambda: daemon.config is not first)
        assert reloads.labels(result="ok")._value.get() == 1


async def test_a_reload_the_store_cannot_take_keeps_the_running_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(config_text(tmp_path))
    async with running_chat(tmp_path, reg, config_path=path, watch_config=None) as daemon:
        first = daemon.config
        assert daemon.engine is not None

        async def store_down(*_args: object) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(routing_db, "ensure_agents", store_down)
        path.write_text(config_text(tmp_path, fail_sends=True))
        assert await daemon.reload() is False
        assert daemon.config is first and daemon.engine.config is first
        assert daemon.metrics.config_reloads.labels(result="failed")._value.get() == 1
        monkeypatch.undo()
        assert await daemon.reload() is True
        assert daemon.engine.config is daemon.config is not first


def with_agents(tmp: Path, *agent_ids: str) -> str:
    """`config_text` with agents reached by email; `mail` must run in memory (`in_memory`)."""
    agents = "".join(
        f"""
  - id: {agent_id}
    name: Agent {agent_id}
    capacity: {{memory: 1}}
    sink: {{type: email, channel: mail, address: {agent_id}@corp.test}}"""
        for agent_id in agent_ids
    )
    secret = tmp / "imap-password"
    secret.write_text("unused")
    secret.chmod(0o600)
    return (
        config_text(tmp)
        + f"""
  - name: mail
    type: email
    email:
      imap: {{host: imap.test, username: s@corp.test, password_file: {secret}}}
      smtp: {{host: smtp.test, from_address: s@corp.test}}
agents:"""
        + agents
        + "\n"
    )


def in_memory(reg: Registry, channel_type: str) -> None:
    """Run `channel_type`'s channels as memory connectors: their agents are reachable
    (an enabled channel whose type has a runtime), and nothing leaves the test."""
    build = reg.specs[MEMORY_TYPE].factory
    assert build is not None

    def as_memory(name: str, _block: object, services: Services) -> Connector:
        return build(name, MemoryChannelConfig(), services)

    reg.specs[channel_type] = dataclasses.replace(reg.specs[channel_type], factory=as_memory)


async def owners(tmp: Path) -> dict[str, str | None]:
    store = await open_store(f"sqlite:///{tmp}/store.sqlite3")
    try:
        async with store.transaction(readonly=True) as conn:
            rows = await conn.execute(
                sa.text("SELECT thread_key, owner_agent_id FROM conversations")
            )
            return {r[0]: r[1] for r in rows}
    finally:
        await store.close()


async def test_an_agent_added_by_a_reload_gets_work(tmp_path: Path) -> None:
    reg = Registry()
    in_memory(reg, "email")
    path = tmp_path / "channels.yaml"
    path.write_text(with_agents(tmp_path, "ana"))
    cfg = parse_config(path.read_text(), registry=reg.specs)
    async with running(cfg, registry=reg.specs, config_path=path, watch_config=None) as daemon:
        chat = reg.built["chat"]
        routed = daemon.metrics.messages_in.labels(channel="chat", kind="message")
        chat.offer(message("chat", "m1", thread="t1"))
        await eventually(lambda: routed._value.get() == 1)
        path.write_text(with_agents(tmp_path, "ana", "a5"))
        assert await daemon.reload() is True
        # Ana is at capacity: the next customer's conversation can only go to a5.
        other = message("chat", "m2", thread="t2").model_copy(
            update={"sender": Sender(address="visitor-2", name="Bo")}
        )
        chat.offer(other)
        await eventually(lambda: routed._value.get() == 2)
    assert await owners(tmp_path) == {"t1": "ana", "t2": "a5"}


async def test_a_component_failure_stops_the_daemon_with_exit_status_1(tmp_path: Path) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg, exits_with=1) as daemon:
        assert daemon.router_loop is not None
        break_consume_loop(daemon.router_loop, BusError("the broker refused us for good"))
        await eventually(lambda: daemon.failure is not None)
    assert daemon.failure == "router"


async def test_a_sighup_reload_is_held_and_its_failure_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry()
    async with running_chat(tmp_path, reg) as daemon:

        async def broken() -> bool:  # `reload` never raises; if a bug made it, say so
            raise RuntimeError("a bug")

        monkeypatch.setattr(daemon, "reload", broken)
        with structlog.testing.capture_logs() as logs:
            daemon.reload_soon()
            assert len(daemon._reloads) == 1  # held: not collected, not lost
            await eventually(lambda: not daemon._reloads)
        assert {
            "event": "config reload failed",
            "error": "RuntimeError",
            "log_level": "error",
        } in logs
        assert daemon.failure is None


async def test_agents_nothing_reaches_are_named_in_the_log_at_start_and_reload(
    tmp_path: Path,
) -> None:
    """The mail channel is disabled: its agents get no work, and the daemon says so when it
    starts and after every reload (not only `omnirouter check`)."""

    def disabled(text: str) -> str:
        return text.replace("    type: email\n", "    type: email\n    enabled: false\n")

    reg = Registry()
    path = tmp_path / "channels.yaml"
    path.write_text(disabled(with_agents(tmp_path, "ana")))
    cfg = parse_config(path.read_text(), registry=reg.specs)
    with structlog.testing.capture_logs() as logs:
        async with running(cfg, registry=reg.specs, config_path=path, watch_config=None) as d:
            path.write_text(disabled(with_agents(tmp_path, "ana", "a5")))
            assert await d.reload() is True
    named = [
        (e["agent"], e["cause"]) for e in logs if e["event"] == "agent unreachable; never assigned"
    ]
    cause = "sink channel mail is disabled"
    assert named == [("ana", cause), ("a5", cause), ("ana", cause)]


async def test_the_enabled_channels_are_named_at_start(tmp_path: Path) -> None:
    reg = Registry()
    text = config_text(tmp_path).replace(
        "channels:\n", "channels:\n  - {name: spare, type: memory, enabled: false}\n"
    )
    cfg = parse_config(text, registry=reg.specs)
    with structlog.testing.capture_logs() as logs:
        async with running(cfg, registry=reg.specs):
            pass
    [line] = [e for e in logs if e["event"].startswith("channels enabled")]
    assert line == {
        "event": "channels enabled",
        "channels": ["chat (memory)"],
        "disabled": ["spare"],
        "log_level": "info",
    }
    assert not [e for e in logs if e["log_level"] == "warning"]


async def test_no_channel_enabled_is_one_warning(tmp_path: Path) -> None:
    """Its agents are unreachable too: the one line says so, not one line per agent."""
    reg = Registry()
    text = with_agents(tmp_path, "ana", "ben").replace(
        "    type: email\n", "    type: email\n    enabled: false\n"
    )
    text = text.replace("    type: memory\n", "    type: memory\n    enabled: false\n")
    cfg = parse_config(text, registry=reg.specs)
    with structlog.testing.capture_logs() as logs:
        async with running(cfg, registry=reg.specs, config_path=tmp_path / "c.yaml"):
            pass
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings == [
        {
            "event": "no channel enabled: nothing comes in and no agent is reached",
            "disabled": ["chat", "mail"],
            "hint": f"give a channel its secrets and set `enabled: true` in {tmp_path / 'c.yaml'}",
            "log_level": "warning",
        }
    ]


async def test_only_the_router_names_no_channel_and_does_not_warn(tmp_path: Path) -> None:
    reg = Registry()
    cfg = parse_config(config_text(tmp_path), registry=reg.specs)
    with structlog.testing.capture_logs() as logs:
        async with running(cfg, registry=reg.specs, only=["router"]):
            pass
    assert {
        "event": "channels enabled: none in this process",
        "only": ["router"],
        "log_level": "info",
    } in logs
    assert not [e for e in logs if e["log_level"] == "warning"]


@pytest.mark.parametrize("owns_process", [True, False])
async def test_the_start_up_heap_is_frozen_only_by_a_run_that_owns_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owns_process: bool
) -> None:
    # The command line's run (its signals) freezes the heap once ready; a run inside a
    # process that starts many (the tests') must not, or nothing of theirs is collected.
    settled: list[bool] = []
    monkeypatch.setattr(daemon_module, "settle_heap", lambda: settled.append(True))
    reg = Registry()
    cfg = parse_config(config_text(tmp_path), registry=reg.specs)
    daemon = Daemon(cfg, registry=reg.specs)
    task = asyncio.create_task(daemon.run(install_signals=owns_process))
    try:
        await eventually(lambda: daemon._ready or task.done())
        assert daemon._ready
        assert settled == ([True] if owns_process else [])
    finally:
        daemon.request_stop()
        assert await task == 0


def test_settle_heap_leaves_the_live_objects_out_of_later_collections() -> None:
    # In its own process: frozen objects are never collected again.
    code = (
        "import gc; from router.daemon import settle_heap; before = len(gc.get_objects());"
        " settle_heap(); print(gc.get_freeze_count() >= before // 2, len(gc.get_objects()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out[0] == "True"  # the import's objects are frozen...
    assert int(out[1]) < 100  # ...and no longer walked by a collection
