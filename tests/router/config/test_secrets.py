"""The one secret-reference type: `${VAR}` or `<name>_file`, one field, never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.email.config import ImapConfig
from connectors.webhook.config import WebhookChannelConfig
from router.config.secrets import MASK, SecretRef, file_key, is_secret
from router.config.types import Secret, Section, check_secret_chars, require_secret
from tests.router.config.support import all_models

VALUE = "correct-horse-battery-staple"


class Block(Section):
    token: Secret | None = None

    def check(self) -> None:
        require_secret(self, "token", "the test needs it")
        check_secret_chars(self, "token", 8, "the token")


def test_a_secret_never_shows_in_reprs_strings_or_json(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE + "\n")
    for block in (Block(token=VALUE), Block.model_validate({"token_file": str(path)})):
        assert block.token is not None and block.token.get_secret_value() == VALUE
        for text in (repr(block), str(block), block.model_dump_json(), repr(block.model_dump())):
            assert VALUE not in text
        assert MASK in block.model_dump_json()


def test_from_a_file_the_value_and_the_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE + "\r\n")
    block = Block.model_validate({"token_file": str(path)})
    assert block.token == SecretRef(VALUE, path=path)
    assert block.token.path == path
    assert repr(block.token) == f"SecretRef('{MASK}', file={str(path)!r})"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": "x", "token_file": "/x"}, "set either token or token_file, not both"),
        ({"token_file": "/nonexistent/token"}, "cannot read /nonexistent/token"),
        ({"token_file": 5}, "expected the path of a file"),
        ({"token": 5}, "expected a string"),
    ],
)
def test_file_problems_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Block.model_validate(data)


def test_a_disabled_channel_does_not_read_its_files() -> None:
    block = Block.model_validate(
        {"token_file": "/nonexistent/token"}, context={"channel_enabled": False}
    )
    assert block.token is not None and not block.token.known
    block.check()  # neither missing nor too short: not known yet
    with pytest.raises(ValueError, match="not read"):
        block.token.get_secret_value()


def test_required_and_length_checks() -> None:
    with pytest.raises(ValidationError, match="token or token_file is required: the test needs it"):
        Block().check()
    with pytest.raises(ValidationError, match="the token must have at least 8 characters"):
        Block(token="short").check()
    Block(token=VALUE).check()


def test_literal_secrets_are_refused_when_strict() -> None:
    with pytest.raises(ValidationError, match="must not be written in the file"):
        Block.model_validate({"token": VALUE}, context={"strict_secrets": True})


def test_connectors_keep_the_file_a_secret_came_from(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("pw")
    imap = ImapConfig.model_validate({"host": "h", "username": "u", "password_file": str(path)})
    assert imap.password is not None
    assert imap.password.path == path  # the email clients re-read it on every login
    literal = ImapConfig.model_validate({"host": "h", "username": "u", "password": "pw"})
    assert literal.password is not None and literal.password.path is None
    hooks = WebhookChannelConfig.model_validate(
        {"secret_file": str(path.with_name("none"))}, context={"channel_enabled": False}
    )
    with pytest.raises(ValueError, match="not read"):
        hooks.key()


def test_every_secret_is_one_secret_ref_field_and_none_has_a_file_field_of_its_own() -> None:
    seen = all_models()
    secrets = [
        (model.__name__, name)
        for model in seen
        for name, info in model.model_fields.items()
        if is_secret(info.annotation)
    ]
    assert len(secrets) >= 9
    for model in seen:
        for name in model.model_fields:
            assert not (
                name.endswith("_file") and name.removesuffix("_file") in model.model_fields
            ), f"{model.__name__}.{name}: declare a Secret field; its _file key comes with it"
    assert file_key("secret") == "secret_file"


CHANNELS_WITHOUT_SECRETS = """
version: 1
store:
  url: sqlite:///var/x.sqlite3
  password: ${DB_PASSWORD}
channels:
  - name: mail
    type: email
    email:
      imap: {host: imap.test, username: s@shop.test, password_file: /nonexistent/imap}
      smtp:
        host: smtp.test
        username: s@shop.test
        password: ${SMTP_PASSWORD}
        from_address: support@shop.test
  - name: hooks
    type: webhook
    webhook: {secret: "${HOOKS_SECRET}"}
"""


def test_without_channel_secrets_a_config_loads_with_none_of_them_set() -> None:
    from router.config import ConfigError
    from tests.router.config.support import parse

    env = {"DB_PASSWORD": "db-secret"}
    with pytest.raises(ConfigError) as info:
        parse(CHANNELS_WITHOUT_SECRETS, env)  # what `run` and `check` do
    assert {p.path for p in info.value.problems} >= {
        "channels[0].email.imap.password_file",
        "channels[0].email.smtp.password",
        "channels[1].webhook.secret",
    }
    config = parse(CHANNELS_WITHOUT_SECRETS, env, channel_secrets=False)
    assert [c.enabled for c in config.channels] == [True, True]  # still enabled
    mail = config.channels[0].settings
    assert not mail.imap.password.known and not mail.smtp.password.known  # type: ignore[union-attr]
    assert config.store.password is not None
    assert config.store.password.get_secret_value() == "db-secret"


def test_without_channel_secrets_the_stores_own_are_still_required() -> None:
    from tests.router.config.support import problems

    [problem] = problems(CHANNELS_WITHOUT_SECRETS, {}, channel_secrets=False)
    assert problem.path == "store.password"
    assert "DB_PASSWORD is not set" in problem.message
