"""The daemon split as deploy/ runs it: the router in one process (`--only router`), the
channels in another (`--only chat,mail`), on one bus and one store."""

from __future__ import annotations

from pathlib import Path

from router.config import parse_config
from tests.harness.common import eventually
from tests.harness.daemon import running
from tests.router.test_daemon import Registry, in_memory, message, owners, with_agents


async def test_a_message_taken_in_by_the_channels_process_reaches_its_agent_through_the_router(
    tmp_path: Path,
) -> None:
    reg = Registry()
    in_memory(reg, "email")  # Ana's sink channel, `mail`, runs in memory
    cfg = parse_config(with_agents(tmp_path, "ana"), registry=reg.specs)
    async with (
        running(cfg, registry=reg.specs, only=["router"]) as router,
        running(cfg, registry=reg.specs, only=["chat", "mail"]) as channels,
    ):
        assert router.channels == [] and channels.router_loop is None
        reg.built["chat"].offer(message("chat", "m1", thread="t1"))
        # In through the channels' process, routed by the router's, out to Ana's tool
        # through the channels' process again.
        routed = router.metrics.messages_in.labels(channel="chat", kind="message")
        await eventually(lambda: routed._value.get() == 1)
        mail = reg.built["mail"]
        await eventually(
            lambda: any(
                e.delivery is not None
                and (e.delivery.event, e.delivery.agent.id) == ("assigned", "ana")
                for e in mail.sent
            )
        )
    assert await owners(tmp_path) == {"t1": "ana"}
