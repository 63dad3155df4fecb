"""`channel_secrets=False`: commands that only read the store load the config without the
channels' secrets (or the supervisor's hash), and nothing else changes."""

from __future__ import annotations

import pytest

from router.config import parse_config
from router.errors import ConfigError

TEXT = """
version: 1
store: {url: "sqlite:///var/x.sqlite3", password: "${DB_PASSWORD}"}
channels:
  - name: tg
    type: telegram
    telegram: {bot_token: "${TG_TOKEN}", mode: polling}
  - name: hooks
    type: webhook
    webhook: {secret_file: /nonexistent/secret}
supervisor: {password_hash: "${SUP_HASH}"}
"""


def test_without_secrets_the_channels_load_enabled_with_their_secrets_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(TEXT, env={"DB_PASSWORD": "x"})
    said = str(caught.value.problems)
    assert "TG_TOKEN" in said and "/nonexistent/secret" in said and "SUP_HASH" in said
    config = parse_config(TEXT, env={"DB_PASSWORD": "x"}, channel_secrets=False)
    assert [c.enabled for c in config.channels] == [True, True]
    tg = config.channels[0].settings
    assert tg is not None and not tg.bot_token.known  # type: ignore[attr-defined]
    assert config.supervisor.password_hash is not None
    assert not config.supervisor.password_hash.known


def test_without_secrets_the_store_s_own_password_is_still_needed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(TEXT, env={}, channel_secrets=False)
    assert [p.path for p in caught.value.problems] == ["store.password"]
