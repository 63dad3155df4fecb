"""Two channels the daemon would mount on one HTTP route: `check` refuses the file
(the daemon could not start), naming the second channel's key and the first channel."""

import io

import pytest

from router.blobs import BlobStore
from router.config import check
from router.connector import Services, load_registry
from router.connector.testing import MemoryCheckpoints
from tests.router.config.support import find, line_of, parse, problems

ENV = {"K": "k" * 32}
CHAT = "  - {{name: {name}, type: webchat{extra}, webchat: {{session_key: '${{K}}'}}}}\n"


def chat(name: str, extra: str = "") -> str:
    return CHAT.format(name=name, extra=extra)


def test_two_web_chats_on_one_path_fail_check_naming_the_second(tmp_path):
    text = "version: 1\nchannels:\n" + chat("chat") + chat("chat2")
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert check(path, ENV, out=out, err=err) == 2
    assert err.getvalue().splitlines() == [
        f"{path}:4: channels[1].webchat.path: /chat is already served by channel 'chat'"
        " (channels[0])",
        f"{path}: 1 problem",
    ]


def test_a_disabled_channel_is_not_mounted_so_it_collides_with_nothing(registry):
    text = (
        "version: 1\nchannels:\n"
        + chat("old", ", enabled: false")
        + chat("chat")
        + chat("chat2", ", enabled: true")
    )
    (problem,) = problems(text, ENV, registry=registry)
    assert problem.path == "channels[2].webchat.path"
    assert problem.message == "/chat is already served by channel 'chat' (channels[1])"
    assert parse(text.replace("enabled: true", "enabled: false"), ENV, registry=registry)


def test_a_sub_path_a_web_chat_mounts_collides_too(registry):
    text = (
        "version: 1\nchannels:\n"
        + chat("chat", ", webchat: {path: /chat/}").replace("}, webchat: {session", ", session")
        + "  - name: hooks\n    type: webhook\n"
        "    webhook: {path: /chat/upload, secret: '${K}'}\n"
    )
    problem = find(problems(text, ENV, registry=registry), "channels[1].webhook.path")
    assert problem.message == "/chat/upload is already served by channel 'chat' (channels[0])"
    assert problem.line == line_of(text, "/chat/upload")
    assert parse(text.replace("/chat/upload", "/chat-upload"), ENV, registry=registry)


def test_two_connector_types_on_one_path_are_refused(registry):
    text = """\
    version: 1
    channels:
      - name: line
        type: phone
        phone: {webhook_path: /hooks, hmac_secret: "${K}"}
      - name: tools
        type: webhook
        webhook:
          secret: "${K}"
          path: /hooks
    """
    problem = find(problems(text, ENV, registry=registry), "channels[1].webhook.path")
    assert problem.message == "/hooks is already served by channel 'line' (channels[0])"
    assert problem.line == line_of(text, " path: /hooks")


def test_one_channel_cannot_mount_two_of_its_routes_on_one_path(registry):
    text = """\
    version: 1
    channels:
      - name: line
        type: phone
        phone:
          webhook_path: /phone
          hmac_secret: "${K}"
          twilio: {path: /phone, auth_token: "${K}"}
    """
    (problem,) = problems(text, ENV, registry=registry)
    assert problem.path == "channels[0].phone.twilio.path"
    assert problem.message == "/phone is already served by channels[0].phone.webhook_path"


def test_the_daemons_own_paths_are_refused(registry):
    text = (
        "version: 1\nchannels:\n"
        "  - {name: t, type: webhook, webhook: {path: /metrics, secret: '${K}'}}\n"
    )
    (problem,) = problems(text, ENV, registry=registry)
    assert problem.path == "channels[0].webhook.path"
    assert problem.message == "/metrics is the daemon's own path"


class _Recorded:
    def __init__(self) -> None:
        self.routes: list[tuple[str, str]] = []

    def add(self, method: str, path: str, handler: object) -> None:
        self.routes.append((method, path))


ALL_MOUNTING = """\
version: 1
channels:
  - {name: chat, type: webchat, webchat: {path: /x/chat/, session_key: "${K}"}}
  - {name: root, type: webchat, webchat: {path: /, session_key: "${K}"}}
  - name: bot
    type: telegram
    telegram:
      bot_token: "${K}"
      mode: webhook
      webhook: {path: /tg, public_url: https://example.com/tg, secret_token: "${K}"}
  - name: line
    type: phone
    phone:
      hmac_secret: "${K}"
      twilio: {path: /twilio, auth_token: "${K}"}
  - {name: tools, type: webhook, webhook: {secret: "${K}"}}
"""


@pytest.mark.parametrize("index", range(5))
def test_a_channel_declares_exactly_the_routes_its_connector_adds(index, tmp_path):
    registry = load_registry()
    channel = parse(ALL_MOUNTING, ENV, registry=registry).channels[index]
    spec = registry[channel.type]
    assert spec.factory is not None and spec.http_routes is not None
    http = _Recorded()
    services = Services(blobs=BlobStore(tmp_path), checkpoints=MemoryCheckpoints(), http=http)
    spec.factory(channel.name, channel.settings, services)
    declared = [(r.method, r.path) for r in spec.http_routes(channel.settings, channel.name)]
    assert http.routes
    assert declared == http.routes
