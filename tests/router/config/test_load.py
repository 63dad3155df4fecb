import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from connectors.email import EmailChannelConfig
from router.config import ConfigError, check, load_config
from router.config.secrets import SecretRef
from router.connector import load_registry
from tests.router.config.support import SHIPPED, find, line_of, parse, problems

EMAIL_CHANNEL = """\
version: 1
channels:
  - name: support-email
    type: email
    email:
      imap:
        host: imap.example.com
        username: support@example.com
        password: ${IMAP_PASSWORD}
      smtp:
        host: smtp.example.com
        from_address: support@example.com
"""


# --- the shipped file ---------------------------------------------------------------


def test_shipped_file_loads_without_any_environment():
    config = load_config(SHIPPED, env={})
    assert config.bus.backend == "embedded"
    assert config.store.url.startswith("sqlite:///")
    assert {c.type for c in config.channels} == {"email", "telegram", "webchat", "phone", "webhook"}
    assert not config.enabled_channels
    assert {s.name for s in config.skills} >= {"billing", "tech", "complaints"}
    assert config.agents and config.queues and config.routing.rules
    assert set(config.routing.complaints.keywords) == {"en", "es"}
    assert set(config.templates["ack"]) == {"en", "es"}
    assert config.sla.first_response["webchat"].for_priority("normal") == timedelta(minutes=5)


def test_shipped_disabled_channels_keep_their_settings():
    config = load_config(SHIPPED, env={})
    email = config.channel("support-email")
    assert isinstance(email.settings, EmailChannelConfig)
    assert email.settings.imap.port == 993
    # The unset variable stays visible as written; the channel cannot start anyway.
    assert email.settings.imap.password is not None
    assert email.settings.imap.password.get_secret_value() == "${IMAP_PASSWORD}"


def test_shipped_file_uses_the_environment_when_given():
    config = load_config(SHIPPED, env={"IMAP_HOST": "mail.internal", "OMNI_HTTP_HOST": "0.0.0.0"})
    assert config.http.host == "0.0.0.0"
    settings = config.channel("support-email").settings
    assert isinstance(settings, EmailChannelConfig)
    assert settings.imap.host == "mail.internal"


# --- many mistakes at once ------------------------------------------------------------

MISTAKES = """\
version: 1
bus:
  partitions: many
http:
  prot: 8080
channels:
  - name: support-email
    type: email
    email:
      imap:
        host: imap.example.com
        port: ${IMAP_PORT}
        username: support@example.com
        password: hunter2-literal
      smtp:
        host: smtp.example.com
        from_address: support@example.com
skills:
  - name: billing
  - name: complaints
queues:
  - name: general
    overflow: nowhere
agents:
  - id: ana
    name: Ana
    skills: {billing: 3, complaints: 4}
    sink: {type: email, channel: support-email, address: ana@example.com}
routing:
  rules:
    - name: broken
      match: {regex: "(unclosed"}
      then: {queue: general}
"""


def test_every_mistake_is_reported_with_line_and_path(registry):
    found = problems(MISTAKES, registry=registry)
    expected = {
        "bus.partitions": ("partitions: many", "valid integer"),
        "http.prot": ("prot: 8080", "unknown key (did you mean 'port'?)"),
        "channels[0].email.imap.port": ("${IMAP_PORT}", "variable IMAP_PORT is not set"),
        "channels[0].email.imap.password": ("hunter2", "secrets must not be written in the file"),
        "queues[0].overflow": (
            "overflow: nowhere",
            "queue 'nowhere' is not defined; defined: general",
        ),
        "routing.rules[0].match.regex": ("(unclosed", "invalid regular expression"),
    }
    for path, (needle, message) in expected.items():
        problem = find(found, path)
        assert problem.line == line_of(MISTAKES, needle), problem
        assert message in problem.message, problem
        assert problem.file == "test.yaml"
    assert len(found) == len(expected), "\n".join(map(str, found))
    # Sorted by line, and printable as FILE:LINE: path: message.
    assert [p.line for p in found] == sorted(p.line for p in found)
    line = line_of(MISTAKES, "prot:")
    assert str(find(found, "http.prot")).startswith(f"test.yaml:{line}: http.prot: ")


def test_references_are_checked_even_when_other_items_are_invalid():
    text = """\
    version: 1
    channels:
      - {name: hooks, type: webhook, enabled: false, webhook: {secret: "${HOOK_SECRET}"}}
    skills: [{name: billing}]
    agents:
      - id: ana
        name: Ana
        skills: {billing: 9}
        sink: {type: webhook, channel: hooks, url: "https://hooks.example.com/a"}
      - id: ben
        name: Ben
        skills: {tch: 2}
        sink: {type: webhook, channel: hooks, url: "https://hooks.example.com/b"}
    routing:
      complaints: {skill: billing}
    """
    found = problems(text)
    assert find(found, "agents[0].skills.billing").line == line_of(text, "billing: 9")
    typo = find(found, "agents[1].skills.tch")  # index as in the file, not after dropping [0]
    assert typo.line == line_of(text, "tch: 2")
    assert "skill 'tch' is not defined" in typo.message


def test_every_problem_is_found_in_one_pass():
    """An item with one invalid key keeps the rest: its undefined names are found now,
    not on the next run (it used to be dropped whole before the references were checked)."""
    text = """\
    version: 1
    skills: [{name: billing}]
    business_hours:
      office: {timezone: Europe/Madrid, weekly: {mon: ["09:00-17:00"]}}
    queues:
      - {name: general}
      - {name: tech, skills: {welsh: 1}, colour: red}
    agents:
      - id: ana
        name: Ana
        skills: {cooking: 3}
        shedule: office
        sink: {type: webhook, channel: hooks, url: "https://hooks.example.com/a"}
      - id: ben
        name: Ben
        schedule: night
        capacity: {email: -1}
        sink: {type: webhook, channel: hooks, url: "https://hooks.example.com/b"}
    channels:
      - {name: hooks, type: webhook, enabled: false, webhook: {secret: "${HOOK_SECRET}"}}
    """
    found = problems(text)
    expected = {
        "queues[1].colour": ("colour: red", "unknown key"),
        "queues[1].skills.welsh": ("welsh: 1", "skill 'welsh' is not defined"),
        "agents[0].skills.cooking": ("cooking: 3", "skill 'cooking' is not defined"),
        "agents[0].shedule": ("shedule: office", "did you mean 'schedule'?"),
        "agents[1].schedule": ("schedule: night", "business hours 'night' is not defined"),
        "agents[1].capacity.email": ("email: -1", "greater than or equal to 0"),
    }
    for path, (needle, message) in expected.items():
        problem = find(found, path)
        assert problem.line == line_of(text, needle), problem
        assert message in problem.message, problem
    assert len(found) == len(expected), "\n".join(map(str, found))


def test_a_dropped_key_does_not_invent_problems():
    """Ana's complaint skill is out of range: she is still the qualified agent, so no
    'no agent has skill complaints' on top of the real problem."""
    text = """\
    version: 1
    skills: [{name: complaints}]
    agents:
      - id: ana
        name: Ana
        skills: {complaints: 9}
        sink: {type: webhook, channel: hooks, url: "https://hooks.example.com/a"}
    channels:
      - {name: hooks, type: webhook, enabled: false, webhook: {secret: "${HOOK_SECRET}"}}
    routing:
      complaints: {skill: complaints, min_level: 3, keywords: {en: [complaint]}}
    """
    [problem] = problems(text)
    assert problem.path == "agents[0].skills.complaints"


def test_yaml_syntax_error_gives_its_line_and_hides_the_text():
    text = 'version: 1\nstore:\n  password: "s3cret-value\nhttp:\n  port: 1\n'
    with pytest.raises(ConfigError) as info:
        parse(text)
    (problem,) = info.value.problems
    assert problem.message.startswith("YAML syntax error")
    assert problem.line is not None and problem.line >= 3
    assert "s3cret-value" not in str(info.value)


def test_duplicate_keys_are_errors():
    text = "version: 1\nhttp:\n  port: 1\n  port: 2\n"
    problem = find(problems(text), "http.port")
    assert problem.line == 4
    assert "duplicate key (first written on line 3)" in problem.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("version: 2\n", "Input should be 1"),
        ("bus: {}\n", "required key is missing"),
    ],
)
def test_top_level_mistakes(text, message):
    assert any(message in p.message for p in problems(text))


# --- environment variables ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${HOST}", {"HOST": "a.example"}, "a.example"),
        ("${HOST:-b.example}", {}, "b.example"),
        ("${HOST:-b.example}", {"HOST": ""}, "b.example"),
        ("${HOST:-b.example}", {"HOST": "a.example"}, "a.example"),
        ("${HOST}", {"HOST": ""}, ""),
        ("pre-${HOST}-${SUFFIX:-x}", {"HOST": "h"}, "pre-h-x"),
        ("${HOST:-}", {}, ""),
        ("literal $${HOST}", {"HOST": "h"}, "literal ${HOST}"),
        ("price: $5", {}, "price: $5"),
    ],
)
def test_interpolation(value, env, expected):
    config = parse(f"version: 1\nskills:\n  - name: x\n    description: '{value}'\n", env)
    assert config.skills[0].description == expected


def test_interpolated_values_take_the_field_type():
    config = parse("version: 1\nhttp:\n  port: ${PORT:-9090}\n")
    assert config.http.port == 9090
    assert type(config.http.port) is int
    assert parse("version: 1\nhttp:\n  port: ${PORT}\n", {"PORT": "81"}).http.port == 81


def test_unset_variable_names_file_line_and_path():
    text = "version: 1\nstore:\n  url: ${DATABASE_URL}\n"
    (problem,) = problems(text)
    assert (problem.file, problem.line, problem.path) == ("test.yaml", 3, "store.url")
    assert "DATABASE_URL is not set" in problem.message


@pytest.mark.parametrize("value", ["${HOST", "${1HOST}", "${HO ST}", "${}"])
def test_malformed_references(value):
    (problem,) = problems(f"version: 1\nhttp:\n  host: '{value}'\n")
    assert "malformed variable reference" in problem.message
    assert problem.line == 3


def test_an_unset_secret_is_not_offered_a_default(registry, tmp_path):
    """`${IMAP_PASSWORD:-default}` would be refused as a secret written in the file:
    the hint names the secret's file key instead, and that is accepted."""
    (problem,) = problems(EMAIL_CHANNEL, registry=registry)
    assert problem.path == "channels[0].email.imap.password"
    assert problem.message == (
        "environment variable IMAP_PASSWORD is not set"
        " (set it, or give the secret in a file: password_file: /path/to/file)"
    )
    secret = tmp_path / "imap"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    followed = EMAIL_CHANNEL.replace("password: ${IMAP_PASSWORD}", f"password_file: {secret}")
    config = parse(followed, registry=registry)
    assert config.channels[0].settings.imap.password.get_secret_value() == "s3cret"
    # Not a secret: a default is fine there, and still offered.
    (problem,) = problems(
        EMAIL_CHANNEL.replace("imap.example.com", "${IMAP_HOST}"),
        {"IMAP_PASSWORD": "x"},
        registry=registry,
    )
    assert problem.message.endswith("(set it, or write ${IMAP_HOST:-default})")


def test_unset_variables_in_a_disabled_channel_are_not_errors(registry):
    disabled = EMAIL_CHANNEL.replace("type: email\n", "type: email\n    enabled: false\n")
    disabled = disabled.replace(
        "host: imap.example.com", "host: ${IMAP_HOST}\n        port: ${IMAP_PORT}"
    )
    config = parse(disabled, registry=registry)
    assert not config.channels[0].enabled
    assert config.channels[0].settings is None  # the port cannot be known yet
    # Enabled, the same file names every missing variable.
    found = problems(disabled.replace("enabled: false", "enabled: true"), registry=registry)
    assert {p.message.split(" is not set")[0] for p in found} == {
        "environment variable IMAP_HOST",
        "environment variable IMAP_PORT",
        "environment variable IMAP_PASSWORD",
    }


def test_other_mistakes_in_a_disabled_channel_are_still_errors(registry):
    text = EMAIL_CHANNEL.replace("type: email\n", "type: email\n    enabled: false\n")
    text = text.replace("host: imap.example.com", "host: imap.example.com\n        prot: 993")
    problem = find(problems(text, registry=registry), "channels[0].email.imap.prot")
    assert problem.line == line_of(text, "prot: 993")


# --- secrets --------------------------------------------------------------------------


def test_secret_from_environment_is_never_printed(registry):
    config = parse(EMAIL_CHANNEL, {"IMAP_PASSWORD": "pw-from-env-123"}, registry=registry)
    settings = config.channels[0].settings
    assert isinstance(settings, EmailChannelConfig)
    assert isinstance(settings.imap.password, SecretRef)
    assert settings.imap.password.get_secret_value() == "pw-from-env-123"
    for text in (
        repr(config),
        str(config),
        repr(settings),
        str(settings),
        config.model_dump_json(),
        repr(config.model_dump()),
    ):
        assert "pw-from-env-123" not in text


def test_secret_in_errors_is_never_printed(registry, capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(EMAIL_CHANNEL + "http:\n  port: nope\n  host: ${H:-x}\n")
    assert check(path, {"IMAP_PASSWORD": "pw-from-env-123"}) == 2
    err = capsys.readouterr().err
    assert "http.port" in err
    assert "pw-from-env-123" not in err
    literal = EMAIL_CHANNEL.replace("${IMAP_PASSWORD}", "hunter2-literal")
    with pytest.raises(ConfigError) as info:
        parse(literal, registry=registry)
    assert "hunter2-literal" not in str(info.value)
    assert "hunter2-literal" not in repr(info.value.problems)


@pytest.mark.parametrize("value", ["hunter2", "'${IMAP_PASSWORD:-hunter2}'", "pre${IMAP_PASSWORD}"])
def test_literal_secrets_are_errors(value, registry):
    text = EMAIL_CHANNEL.replace("${IMAP_PASSWORD}", value)
    problem = find(
        problems(text, {"IMAP_PASSWORD": "x"}, registry=registry), "channels[0].email.imap.password"
    )
    assert "must not be written in the file" in problem.message
    assert "password_file" in problem.message


def test_secret_from_a_file(registry, tmp_path):
    secret = tmp_path / "imap-password"
    secret.write_text("from-a-file\n")
    text = EMAIL_CHANNEL.replace("password: ${IMAP_PASSWORD}", f"password_file: {secret}")
    settings = parse(text, registry=registry).channels[0].settings
    assert isinstance(settings, EmailChannelConfig)
    assert settings.imap.password is not None
    assert settings.imap.password.get_secret_value() == "from-a-file"


def test_secret_file_problems(registry, tmp_path):
    missing = EMAIL_CHANNEL.replace(
        "password: ${IMAP_PASSWORD}", f"password_file: {tmp_path / 'nope'}"
    )
    problem = find(problems(missing, registry=registry), "channels[0].email.imap.password_file")
    assert "cannot read" in problem.message
    both = EMAIL_CHANNEL.replace(
        "password: ${IMAP_PASSWORD}", "password: ${IMAP_PASSWORD}\n        password_file: /x"
    )
    problem = find(
        problems(both, {"IMAP_PASSWORD": "x"}, registry=registry),
        "channels[0].email.imap.password_file",
    )
    assert "not both" in problem.message
    # A disabled channel's secret files are not read.
    disabled = missing.replace("type: email\n", "type: email\n    enabled: false\n")
    assert parse(disabled, registry=registry).channels[0].enabled is False


def test_store_password_stays_out_of_the_url():
    found = problems("version: 1\nstore:\n  url: postgresql://omni:pw@db/omni\n")
    assert "remove it and set store.password" in find(found, "store.url").message
    config = parse(
        "version: 1\nstore:\n  url: postgresql://omni@db:5432/omni\n  password: ${PGPW}\n",
        {"PGPW": "p@ss/word"},
    )
    assert config.store.url == "postgresql://omni@db:5432/omni"
    assert config.store.dsn() == "postgresql://omni:p%40ss%2Fword@db:5432/omni"
    assert "p@ss" not in repr(config)


# --- channels -------------------------------------------------------------------------


def test_enabled_channel_exposes_its_validated_block(registry):
    config = parse(EMAIL_CHANNEL, {"IMAP_PASSWORD": "x"}, registry=registry)
    (channel,) = config.enabled_channels
    assert channel.name == "support-email"
    assert isinstance(channel.settings, EmailChannelConfig)
    assert channel.settings.smtp.port == 587
    assert config.channel("support-email") is channel


def test_enabled_channel_without_a_runtime_is_an_error():
    text = (
        "version: 1\nchannels:\n  - name: line\n    type: phone\n    phone:\n"
        "      webhook_path: /phone/cdr\n      hmac_secret: ${S}\n"
    )
    installed = load_registry()
    without = {**installed, "phone": replace(installed["phone"], factory=None)}
    problem = find(problems(text, {"S": "x"}, registry=without), "channels[0].type")
    assert problem.message == (
        "the phone connector's runtime is not in this build yet; set enabled: false"
    )


def test_unknown_channel_type_lists_the_known_ones(registry):
    text = EMAIL_CHANNEL.replace("type: email", "type: emial")
    problem = find(problems(text, registry=registry), "channels[0].type")
    assert problem.message == (
        "unknown channel type 'emial'; known types: email, phone, telegram, webchat, webhook"
    )


@pytest.mark.parametrize(
    ("snippet", "path", "message"),
    [
        ("  - {name: Support, type: webchat}\n", "channels[0].name", "not a valid name"),
        (
            "  - {name: a, type: webchat, enabled: false}\n"
            "  - {name: a, type: webchat, enabled: false}\n",
            "channels[1].name",
            "duplicate name 'a' (also channels[0])",
        ),
        (
            "  - {name: a, type: webchat}\n",
            "channels[0].webchat.session_key",
            "session_key or session_key_file is required",
        ),
        ("  - {name: a, type: webchat, settings: {}}\n", "channels[0].settings", "unknown key"),
        ("  - {name: a, type: webchat, email: {}}\n", "channels[0].email", "unknown key"),
        (
            "  - {name: a, type: webchat, webchat: {path: chat}}\n",
            "channels[0].webchat.path",
            "String should match pattern",
        ),
        (
            "  - {name: a, type: webchat, webchat: {allowed_origins: [shop.example.com]}}\n",
            "channels[0].webchat.allowed_origins",
            "is not an origin",
        ),
        (
            "  - {name: a, type: telegram, telegram: {mode: webhook, bot_token: '${T}'}}\n",
            "channels[0].telegram.webhook",
            "mode: webhook needs a webhook block",
        ),
        (
            "  - {name: a, type: phone, phone: {}}\n",
            "channels[0].phone.hmac_secret",
            "hmac_secret or hmac_secret_file is required",
        ),
    ],
)
def test_channel_mistakes(snippet, path, message, registry):
    found = problems("version: 1\nchannels:\n" + snippet, {"T": "t"}, registry=registry)
    assert message in find(found, path).message


def test_kafka_backend_is_inferred_from_a_kafka_block():
    config = parse("version: 1\nbus:\n  kafka:\n    bootstrap_servers: k1:9092,k2:9092\n")
    assert config.bus.backend == "kafka"
    assert config.bus.kafka.group_id == "omnirouter-router"
    assert parse("version: 1\n").bus.backend == "embedded"
    found = problems("version: 1\nbus:\n  backend: kafka\n")
    assert "set kafka.bootstrap_servers" in find(found, "bus.kafka.bootstrap_servers").message
    found = problems("version: 1\nbus:\n  kafka: {bootstrap_servers: k1}\n")
    assert "host:port" in find(found, "bus.kafka.bootstrap_servers").message


# --- routing sections -----------------------------------------------------------------

ROUTING = """\
version: 1
channels:
  - {name: chat, type: webchat, enabled: false}
skills: [{name: billing}, {name: complaints}]
queues:
  - {name: a, overflow: b}
  - {name: b, overflow: a}
agents:
  - id: ana
    name: Ana
    skills: {billing: 2, complaints: 3}
    channels: [chat, mail]
    capacity: {webchat: 2, fax: 1}
    schedule: office
    timezone: Mars/Olympus
    sink: {type: email, channel: chat, address: ana@example.com}
business_hours:
  office:
    timezone: Europe/Madrid
    weekly: {mon: ["09:00-14:00", "13:00-18:00"]}
routing:
  rules:
    - name: r
      match: {channel_type: fax}
      then: {skills: {billing: 6}}
sla:
  first_response: {fax: {normal: 1h}}
  warning_template: on_it
templates:
  on_it: {es: "Hola {customer_name}"}
"""


def test_routing_mistakes_name_their_paths(registry):
    found = problems(ROUTING, registry=registry)
    expected = {
        "agents[0].timezone": "unknown time zone 'Mars/Olympus'",
        "business_hours.office.weekly": "mon: 09:00-14:00 overlaps 13:00-18:00",
        "routing.rules[0].then.skills.billing": "less than or equal to 5",
    }
    for path, message in expected.items():
        assert message in find(found, path).message


def test_cross_references(registry):
    text = (
        ROUTING.replace("Mars/Olympus", "Europe/Madrid")
        .replace(', "13:00-18:00"', "")
        .replace("billing: 6", "billing: 3")
    )
    found = problems(text, registry=registry)
    expected = {
        "queues[0].overflow": "overflow loops: a -> b -> a",
        "agents[0].channels[1]": "channel 'mail' is not defined; defined: chat",
        "agents[0].capacity.fax": "channel type 'fax' is not defined",
        "agents[0].sink.channel": "channel 'chat' is a webchat channel, not email",
        "routing.rules[0].match.channel_type[0]": "channel type 'fax' is not defined",
        "sla.first_response.fax": "channel type 'fax' is not defined",
        "templates.on_it": "no text in the default language 'en'",
    }
    for path, message in expected.items():
        problem = find(found, path)
        assert message in problem.message, problem
    assert find(found, "agents[0].capacity.fax").line == line_of(text, "fax: 1")
    assert len(found) == len(expected), "\n".join(map(str, found))


def test_time_ranges_must_be_ordered():
    text = (
        "version: 1\nbusiness_hours:\n  x:\n    timezone: UTC\n    weekly: {tue: ['18:00-09:00']}\n"
    )
    found = problems(text)
    assert "ends before it starts" in find(found, "business_hours.x.weekly.tue[0]").message


def test_templates_reject_unknown_placeholders():
    found = problems("version: 1\ntemplates:\n  ack: {en: 'Hi {name}'}\n")
    assert "unknown placeholder {name}" in find(found, "templates.ack.en").message


def test_complaints_need_a_qualified_agent():
    text = """\
    version: 1
    channels:
      - {name: hooks, type: webhook, enabled: false, webhook: {secret: "${HOOK_SECRET}"}}
    skills: [{name: complaints}]
    agents:
      - id: a
        name: A
        skills: {complaints: 2}
        sink: {type: webhook, channel: hooks, url: "https://h/x"}
    routing:
      complaints:
        keywords: {en: [complaint]}
    """
    problem = find(problems(text), "routing.complaints.skill")
    assert "no agent has skill 'complaints' at level 3 or more" in problem.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        (90, timedelta(seconds=90)),
    ],
)
def test_durations(value, expected):
    config = parse(f"version: 1\nrouting:\n  last_agent_wait: {value}\n")
    assert config.routing.last_agent_wait == expected


@pytest.mark.parametrize("value", ["5 minutes", "m", "-5m", "1.5h"])
def test_bad_durations(value):
    found = problems(f"version: 1\nrouting:\n  last_agent_wait: {value}\n")
    assert "expected a duration" in find(found, "routing.last_agent_wait").message


# --- check() --------------------------------------------------------------------------


def test_check_ok(capsys):
    assert check(SHIPPED, {}) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {SHIPPED} (5 channels, 0 enabled; 3 agents;")


def test_check_warns_about_agents_nothing_reaches(tmp_path):
    # As shipped, every channel is disabled: one line says so (every agent is unreachable).
    out, err = io.StringIO(), io.StringIO()
    assert check(SHIPPED, {}, out=out, err=err) == 0  # a warning, not a problem
    assert out.getvalue().startswith("ok: ")
    assert err.getvalue().splitlines() == [
        "warning: no channel enabled: nothing comes in and no agent is reached"
    ]
    # Ana's mailbox enabled: she is reachable; the others are named, each with the cause.
    path = tmp_path / "channels.yaml"
    text = SHIPPED.read_text()
    path.write_text(
        text.replace("type: email\n    enabled: false", "type: email\n    enabled: true", 1)
    )
    err = io.StringIO()
    env = {"IMAP_PASSWORD": "x", "SMTP_PASSWORD": "x"}
    assert check(path, env, out=io.StringIO(), err=err) == 0, err.getvalue()
    assert err.getvalue().splitlines() == [
        "warning: agent ben is unreachable (sink channel shop-telegram is disabled):"
        " never assigned",
        "warning: agent chloe is unreachable (sink channel agent-hooks is disabled):"
        " never assigned",
    ]


def test_check_reports_problems_on_stderr(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nhttp:\n  port: 99999\n  prot: 1\n")
    out, err = io.StringIO(), io.StringIO()
    assert check(path, {}, out=out, err=err) == 2
    lines = err.getvalue().splitlines()
    assert lines[0].startswith(f"{path}:3: http.port: ")
    assert lines[1].startswith(f"{path}:4: http.prot: unknown key")
    assert lines[-1] == f"{path}: 2 problems"
    assert out.getvalue() == ""


def test_check_unreadable_file(tmp_path):
    err = io.StringIO()
    assert check(Path(tmp_path / "missing.yaml"), {}, err=err) == 2
    assert "cannot read" in err.getvalue()


def test_config_is_frozen():
    config = load_config(SHIPPED, env={})
    with pytest.raises(ValueError):
        config.http.port = 1  # type: ignore[misc]


def test_disabled_channel_skips_only_its_block(registry):
    text = EMAIL_CHANNEL.replace(
        "type: email\n",
        "type: email\n    enabled: ${EMAIL_ENABLED:-false}\n    description: ${DESCRIPTION}\n",
    )
    # `description` is outside the block: still required. IMAP_PASSWORD inside it is not.
    (problem,) = problems(text, registry=registry)
    assert problem.path == "channels[0].description"
    assert "DESCRIPTION is not set" in problem.message
    config = parse(text, {"DESCRIPTION": "mailbox"}, registry=registry)
    assert config.channels[0].enabled is False
    found = problems(text, {"DESCRIPTION": "mailbox", "EMAIL_ENABLED": "true"}, registry=registry)
    assert [p.path for p in found] == ["channels[0].email.imap.password"]


def test_shipped_file_switches_to_kafka_and_postgresql_by_environment() -> None:
    config = load_config(
        SHIPPED,
        env={
            "OMNI_BUS_BACKEND": "kafka",
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "OMNI_STORE_URL": "postgresql://omni@db:5432/omni",
            "OMNI_DB_PASSWORD": "p@ss",
        },
    )
    assert config.bus.backend == "kafka"
    assert config.bus.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert config.store.dsn() == "postgresql://omni:p%40ss@db:5432/omni"
    assert "p@ss" not in repr(config)
    plain = load_config(SHIPPED, env={})
    assert plain.store.dsn() == "sqlite:///var/omnirouter.sqlite3"
