"""The `webhook:` channel block and webhook sinks, as an operator writes them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from connectors.webhook.config import WebhookChannelConfig
from tests.router.config.support import find, line_of, parse, problems

SECRET = "a-long-enough-signing-key"


def config_text(channel: str = "{secret: '${HOOK_SECRET}'}", sink: str = "") -> str:
    return f"""\
version: 1
channels:
  - name: agent-hooks
    type: webhook
    webhook: {channel}
agents:
  - id: chloe
    name: Chloé
    sink: {sink or "{type: webhook, channel: agent-hooks, url: '${CHLOE_URL}'}"}
"""


ENV = {"HOOK_SECRET": SECRET, "CHLOE_URL": "https://hooks.slack.example/services/T/B/X"}


def test_a_complete_channel_and_sink() -> None:
    config = parse(config_text(), ENV)
    settings = config.channel("agent-hooks").settings
    assert isinstance(settings, WebhookChannelConfig)
    assert settings.key() == SECRET.encode()
    assert settings.timeout == timedelta(seconds=10)
    assert settings.max_body_bytes == 256 * 1024
    assert settings.max_clock_skew == timedelta(minutes=5)
    assert settings.events_path("agent-hooks") == "/webhook/agent-hooks/events"
    sink = config.agents[0].sink
    assert (sink.type, sink.channel, sink.url) == ("webhook", "agent-hooks", ENV["CHLOE_URL"])
    assert SECRET not in repr(config) and SECRET not in str(settings)


def test_secret_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hooks.secret"
    path.write_text(SECRET + "\n")
    config = parse(config_text(f"{{secret_file: {path}, path: /hooks/events}}"), ENV)
    settings = config.channel("agent-hooks").settings
    assert isinstance(settings, WebhookChannelConfig)
    assert settings.key() == SECRET.encode()
    assert settings.events_path("agent-hooks") == "/hooks/events"


def test_webhook_sink_without_channel_is_a_clear_error() -> None:
    text = config_text(sink="{type: webhook, url: 'https://hooks.example.com/c'}")
    problem = find(problems(text, ENV), "agents[0].sink.channel")
    assert problem.message == (
        "a webhook sink needs channel: the name of a channel of type webhook"
    )
    assert problem.line == line_of(text, "sink:")


def test_webhook_channel_without_secret_is_a_clear_error() -> None:
    for channel in ("{}", "{timeout: 5s}"):
        problem = find(problems(config_text(channel), ENV), "channels[0].webhook.secret")
        assert problem.message == (
            "secret or secret_file is required: it signs the deliveries"
            " and proves that events come from the agents' tool"
        )


@pytest.mark.parametrize(
    ("channel", "sink", "env", "path", "message"),
    [
        (
            "{secret: 'written-in-the-file-literally'}",
            "",
            ENV,
            "channels[0].webhook.secret",
            "secrets must not be written in the file",
        ),
        (
            "{secret: '${SHORT}'}",
            "",
            {**ENV, "SHORT": "tiny"},
            "channels[0].webhook.secret",
            "at least 16 characters",
        ),
        (
            "{secret: '${HOOK_SECRET}', secret_file: /x}",
            "",
            ENV,
            "channels[0].webhook.secret_file",
            "set either secret or secret_file, not both",
        ),
        (
            "{secret: '${HOOK_SECRET}', path: events}",
            "",
            ENV,
            "channels[0].webhook.path",
            "String should match pattern",
        ),
        (
            "{secret: '${HOOK_SECRET}', max_body_bytes: 10}",
            "",
            ENV,
            "channels[0].webhook.max_body_bytes",
            "greater than or equal to 1024",
        ),
        (
            "{secret: '${HOOK_SECRET}', sign: yes}",
            "",
            ENV,
            "channels[0].webhook.sign",
            "unknown key",
        ),
        (
            "{secret: '${HOOK_SECRET}'}",
            "{type: webhook, channel: agent-hooks}",
            ENV,
            "agents[0].sink.url",
            "a webhook sink needs url",
        ),
        (
            "{secret: '${HOOK_SECRET}'}",
            "{type: webhook, channel: agent-hooks, url: 'ftp://files.example.com/x'}",
            ENV,
            "agents[0].sink.url",
            "expected an http:// or https:// URL",
        ),
        (
            "{secret: '${HOOK_SECRET}'}",
            "{type: webhook, channel: agent-hooks, url: 'https://h/x', address: c@x.com}",
            ENV,
            "agents[0].sink.address",
            "a webhook sink has no address",
        ),
        (
            "{secret: '${HOOK_SECRET}'}",
            "{type: webhook, channel: nowhere, url: 'https://h/x'}",
            ENV,
            "agents[0].sink.channel",
            "channel 'nowhere' is not defined; defined: agent-hooks",
        ),
        (
            "{secret: '${HOOK_SECRET}'}",
            "{type: webhook, channel: agent-hooks, url: '${CHLOE_URL}', secret: '${HOOK_SECRET}'}",
            ENV,
            "agents[0].sink.secret",
            "unknown key",
        ),
    ],
)
def test_mistakes(channel: str, sink: str, env: dict[str, str], path: str, message: str) -> None:
    found = problems(config_text(channel, sink), env)
    assert message in find(found, path).message


def test_sink_channel_must_be_a_webhook_channel() -> None:
    text = config_text().replace(
        "channels:\n", "channels:\n  - {name: chat, type: webchat, enabled: false}\n"
    ) + (
        "  - id: dan\n    name: Dan\n    sink: {type: webhook, channel: chat, url: 'https://h/d'}\n"
    )
    problem = find(problems(text, ENV), "agents[1].sink.channel")
    assert problem.message == "channel 'chat' is a webchat channel, not webhook"


def test_a_disabled_channel_may_wait_for_its_secret() -> None:
    text = config_text().replace("type: webhook\n", "type: webhook\n    enabled: false\n")
    config = parse(text, {"CHLOE_URL": "https://h/c"})
    assert config.enabled_channels == []
