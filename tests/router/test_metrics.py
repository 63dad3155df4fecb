"""The daemon's metrics: the floor from the store, service levels and incidents, counters at
0 for every configured label value, one series per counter, build and process facts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from router import __version__
from router.envelope import Envelope, Sender, encode, envelope_id
from router.metrics import Floor, Known, Metrics
from tests.connectors.webchat.daemon import site
from tests.harness.common import eventually
from tests.harness.metrics import floor_daemon, sample, scrape

FLOOR_WAIT = 30.0  # the clock refreshes the floor every few seconds; a busy machine is slow
BACKLOG_WAIT = 60.0  # ... and the backlog of deliveries with consumer lag, every ten


def message(native: str, text: str) -> Envelope:
    return Envelope(
        id=envelope_id("chat", native),
        kind="message",
        direction="in",
        channel="chat",
        channel_type="memory",
        thread_key=native,
        sender=Sender(address=f"visitor-{native}", name="Ana"),
        received_at=datetime.now(UTC),
        text=text,
    )


def test_no_created_series_and_build_and_process_facts() -> None:
    metrics = Metrics()
    metrics.know(Known(channels=("chat",)))
    metrics.messages_in.labels(channel="chat", kind="message").inc()
    text = metrics.render().decode()
    assert "_created" not in text
    assert sample(text, "omnirouter_build_info", version=__version__) == 1
    assert sample(text, "omnirouter_messages_in_total", channel="chat", kind="message") == 1
    assert "process_resident_memory_bytes" in text
    assert "python_info{" in text
    assert "python_gc_collections_total" in text


def test_counters_start_at_zero_for_every_configured_value_and_follow_a_reload() -> None:
    metrics = Metrics()
    metrics.know(
        Known(
            channels=("chat", "mail"),
            queues=("general",),
            channel_types=("email",),
            dead_letter_sources=("omni.inbound", "outbox"),
            topics=("omni.outbound.chat",),
        ),
        running=["chat"],
    )
    text = metrics.render().decode()
    for channel in ("chat", "mail"):
        assert sample(text, "omnirouter_sla_breaches_total", channel=channel) == 0
        assert sample(text, "omnirouter_sla_warnings_total", channel=channel) == 0
        assert sample(text, "omnirouter_send_retries_total", channel=channel) == 0
        assert sample(text, "omnirouter_messages_out_total", channel=channel, result="failed") == 0
    assert sample(text, "omnirouter_incidents_total", kind="complaint") == 0
    assert sample(text, "omnirouter_dead_letters_total", source="outbox") == 0
    assert sample(text, "omnirouter_config_reloads_total", result="invalid") == 0
    assert sample(text, "omnirouter_outbox_retries_total", topic="omni.outbound.chat") == 0
    assert sample(text, "omnirouter_queue_depth", queue="general") == 0
    assert sample(text, "omnirouter_queue_oldest_wait_seconds", queue="general") == 0
    assert sample(text, "omnirouter_agent_open_conversations", channel_type="email") == 0
    assert sample(text, "omnirouter_connector_up", channel="chat") == 0
    assert sample(text, "omnirouter_agents", status="available") == 0

    # A reload: `general` is renamed `support`; a conversation still waits in `general`.
    metrics.know(Known(channels=("chat",), queues=("support",)))
    metrics.set_floor(Floor(queues={"general": (2, 90.0, 1)}, agents={"available": 3}))
    text = metrics.render().decode()
    assert sample(text, "omnirouter_queue_depth", queue="support") == 0
    assert sample(text, "omnirouter_queue_depth", queue="general") == 2
    assert sample(text, "omnirouter_queue_oldest_wait_seconds", queue="general") == 90
    assert sample(text, "omnirouter_queue_overdue", queue="general") == 1
    assert sample(text, "omnirouter_agents", status="available") == 3
    assert sample(text, "omnirouter_agents", status="away") == 0
    metrics.set_floor(Floor())  # it was answered: the removed queue goes
    text = metrics.render().decode()
    assert sample(text, "omnirouter_queue_depth", queue="general") is None
    assert sample(text, "omnirouter_outbox_depth", topic="omni.outbound.chat") is None


async def test_the_floor_and_incidents_of_a_running_daemon(tmp_path: Path) -> None:
    async with floor_daemon(tmp_path) as daemon:
        assert daemon.bus is not None
        first = await scrape(daemon)
        assert sample(first, "omnirouter_queue_depth", queue="vip") == 0
        assert sample(first, "omnirouter_incidents_total", kind="complaint") == 0
        assert sample(first, "omnirouter_sla_breaches_total", channel="chat") == 0
        for env in (message("n1", "where is my order?"), message("n2", "this is unacceptable")):
            await daemon.bus.produce(daemon.topics.inbound, env.bus_key(), encode(env))

        async def shown() -> bool:
            text = await scrape(daemon)
            return (
                sample(text, "omnirouter_queue_depth", queue="general") == 2
                and sample(text, "omnirouter_queue_overdue", queue="general") == 2
                and sample(text, "omnirouter_sla_breaches_total", channel="chat") == 2
            )

        await eventually(shown, FLOOR_WAIT, every=0.2)
        text = await scrape(daemon)
        assert sample(text, "omnirouter_queue_depth", queue="vip") == 0
        assert (sample(text, "omnirouter_queue_oldest_wait_seconds", queue="general") or 0) >= 2
        assert sample(text, "omnirouter_sla_warnings_total", channel="chat") == 2
        assert sample(text, "omnirouter_incidents_total", kind="complaint") == 1
        assert sample(text, "omnirouter_incidents_total", kind="sla_breach") == 2
        assert sample(text, "omnirouter_agents", status="available") == 0
        assert (sample(text, "omnirouter_routing_duration_seconds_count") or 0) >= 2


async def test_deliveries_to_a_topic_no_channel_reads_are_unconsumed(tmp_path: Path) -> None:
    """A supervisor reached through a disabled channel: the SLA warning's escalation to
    them goes to a topic nothing reads, and waits there."""
    secret = tmp_path / "imap-password"
    secret.write_text("unused")
    secret.chmod(0o600)
    unread = f"""
  - name: mail
    type: email
    enabled: false
    email:
      imap: {{host: imap.test, username: s@corp.test, password_file: {secret}}}
      smtp: {{host: smtp.test, from_address: s@corp.test}}
agents:
  - id: sue
    name: Sue
    supervisor: true
    status: away
    skills: {{complaints: 3}}
    sink: {{type: email, channel: mail, address: sue@corp.test}}
"""
    async with floor_daemon(tmp_path, unread) as daemon:
        assert daemon.bus is not None
        topic = daemon.topics.agent("mail")
        unconsumed = "omnirouter_agent_deliveries_unconsumed_records"

        async def measured(records: int) -> bool:
            return sample(await scrape(daemon), unconsumed, topic=topic) == records

        await eventually(lambda: measured(0), BACKLOG_WAIT, every=0.2)
        assert sample(await scrape(daemon), "omnirouter_agents_unreachable") == 1
        env = message("n1", "where is my order?")
        await daemon.bus.produce(daemon.topics.inbound, env.bus_key(), encode(env))

        await eventually(lambda: measured(1), BACKLOG_WAIT, every=0.2)
        text = await scrape(daemon)
        assert sample(text, "omnirouter_sla_warnings_total", channel="chat") == 1
        assert sample(text, "omnirouter_agents", status="away") == 1


def test_a_process_without_the_router_shows_no_floor() -> None:
    metrics = Metrics()
    metrics.know(Known(channels=("chat",), floor=False), running=["chat"])
    text = metrics.render().decode()
    assert sample(text, "omnirouter_connector_up", channel="chat") == 0
    assert "omnirouter_queue_depth{" not in text
    assert "omnirouter_agents{" not in text


async def test_first_contact_resolutions_and_praise_are_counted(
    tmp_path: Path,
) -> None:
    origin = "http://shop.test"
    async with site(tmp_path, origin) as s, aiohttp.ClientSession() as http:
        before = await scrape(s.daemon)
        labels = {"channel": "web", "first_contact": "true"}
        assert sample(before, "omnirouter_resolutions_total", **labels) == 0
        assert (
            sample(
                before, "omnirouter_agent_resolutions_total", agent="chloe", first_contact="false"
            )
            == 0
        )
        async with http.ws_connect(s.chat_url, headers={"Origin": origin}) as ws:
            await ws.send_json({"t": "hello", "session": None, "last": 0})
            await ws.send_json({"t": "msg", "cid": "c1", "text": "Where is my order?"})
            await eventually(lambda: len(s.tool.requests) >= 1, FLOOR_WAIT)
            await s.agent_resolves()

            async def counted() -> bool:
                text = await scrape(s.daemon)
                return sample(text, "omnirouter_resolutions_total", **labels) == 1

            await eventually(counted, FLOOR_WAIT, every=0.2)
            assert sample(await scrape(s.daemon), "omnirouter_praise_total", agent="chloe") == 0
            # Thanks after the resolution: praise for Chloé, counted.
            await ws.send_json({"t": "msg", "cid": "c2", "text": "Thank you, great service!"})

            async def praised() -> bool:
                text = await scrape(s.daemon)
                return sample(text, "omnirouter_praise_total", agent="chloe") == 1

            await eventually(praised, FLOOR_WAIT, every=0.2)
        text = await scrape(s.daemon)
        assert (
            sample(text, "omnirouter_agent_resolutions_total", agent="chloe", first_contact="true")
            == 1
        )
        queue = {"queue": "", "first_contact": "true"}  # the config has no queues
        assert sample(text, "omnirouter_queue_resolutions_total", **queue) == 1
        assert (
            sample(text, "omnirouter_resolutions_total", channel="web", first_contact="false") == 0
        )
