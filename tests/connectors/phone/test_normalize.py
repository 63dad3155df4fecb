"""`omnirouter normalize --type phone`: one CDR row or JSON call event, read with the
channel's own settings (region, time zone, agents) when a config names the channel."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from router.cli import main as cli
from tests.connectors.phone.helpers import cdr_line

CONFIG = """version: 1
channels:
  - name: line
    type: phone
    phone:
      webhook_path: null
      default_region: ES
      timezone: Europe/Madrid
      agents: {"201": ana}
"""


def call_event(
    tmp_path: Path,
    *,
    call_id: str = "c-1",
    caller: str = "+34600112233",
    disposition: str = "missed",
) -> Path:
    """A JSON call event as the PBX posts it, in a file for `normalize`."""
    event = tmp_path / "event.json"
    fields = {
        "call_id": call_id,
        "from": caller,
        "to": "+34910000000",
        "direction": "inbound",
        "disposition": disposition,
        "started_at": "2026-03-10T10:00:00+01:00",
    }
    event.write_bytes(orjson.dumps(fields))
    return event


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "channels.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    row = tmp_path / "row.csv"
    row.write_text(cdr_line() + "\n", encoding="utf-8")
    return config, row


def test_a_cdr_row_reads_with_the_channel_s_settings(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, row = files
    args = ["normalize", "--type", "phone", "--channel", "line", "-c", str(config), str(row)]
    assert cli(args) == 0
    out = orjson.loads(capsys.readouterr().out)
    # The national number in the channel's region, the time read in its zone (10:00 in
    # Madrid) and given in UTC on the bus, the agent mapped.
    assert (out["channel"], out["thread_key"]) == ("line", "+34600112233")
    assert out["call"]["started_at"] == "2026-03-10T09:00:00+00:00"
    assert (out["call"]["disposition"], out["call"]["agent"]) == ("answered", "ana")


def test_without_a_config_the_defaults_read_it_and_say_why_not(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, row = files
    assert cli(["normalize", "--type", "phone", str(row)]) == 2
    err = capsys.readouterr().err
    assert "not a customer's number we can call back" in err and err.count("\n") == 1


def test_a_json_call_event_and_bad_input(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = files
    event = call_event(tmp_path)
    base = ["normalize", "--type", "phone", "--channel", "line", "-c", str(config)]
    assert cli([*base, str(event)]) == 0
    assert orjson.loads(capsys.readouterr().out)["call"]["disposition"] == "missed"
    two = tmp_path / "two.csv"
    two.write_text(cdr_line() + "\n" + cdr_line(uniqueid="2") + "\n", encoding="utf-8")
    assert cli([*base, str(two)]) == 2
    assert "expected one CDR row or one JSON call event; got 2 lines" in capsys.readouterr().err
    assert cli(["normalize", "--type", "phone", "--channel", "nope", "-c", str(config), "x"]) == 2
    assert "no channel 'nope' of type 'phone'" in capsys.readouterr().err


def test_a_channel_with_a_secret_from_the_environment_normalizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The settings go to a child process by pickle; an interpolated secret must survive it.
    monkeypatch.setenv("PHONE_HMAC_SECRET", "a-webhook-signing-secret-of-32-chars")
    config = tmp_path / "channels.yaml"
    config.write_text(
        """version: 1
channels:
  - name: main-line
    type: phone
    phone:
      default_region: ES
      timezone: Europe/Madrid
      webhook_path: /phone/cdr
      hmac_secret: ${PHONE_HMAC_SECRET}
""",
        encoding="utf-8",
    )
    # A national number: read in the channel's region.
    event = call_event(
        tmp_path, call_id="1741597200.7", caller="600112233", disposition="abandoned"
    )
    args = ["normalize", "--type", "phone", "--channel", "main-line", "-c", str(config)]
    assert cli([*args, str(event)]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert (out["channel"], out["thread_key"]) == ("main-line", "+34600112233")
