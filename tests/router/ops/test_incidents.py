"""`omnirouter incidents`: the #REF people quote, the customer and the channel; no secrets."""

from __future__ import annotations

import orjson

from tests.router.ops.conftest import Cli, Floor


def test_incidents_show_ref_customer_and_channel_without_channel_secrets(
    floor: Floor, cli: Cli
) -> None:
    # The config enables channels whose ${P} is set nowhere: a read of the store
    # must not ask for them.
    code, out, err = cli("incidents", "-c", floor.config)
    assert (code, err) == (0, "")
    [row] = [line for line in out.splitlines() if "complaint" in line]
    assert f"#{floor.refs['<c@x>']}" in row
    assert "Raj" in row and "mail" in row and "complaint detected" in row


def test_incidents_as_json_lines(floor: Floor, cli: Cli) -> None:
    code, out, _ = cli("incidents", "-c", floor.config, "--json", "--kind", "complaint")
    [incident] = map(orjson.loads, out.splitlines())
    assert code == 0
    assert incident["ref"] == floor.refs["<c@x>"]
    assert (incident["customer"], incident["channel"]) == ("Raj", "mail")
    assert incident["conversation_id"] == floor.ids["<c@x>"]
    assert incident["created_at"].startswith("2026-03-02T10:01:00")


def test_a_command_that_starts_channels_still_needs_their_secrets(floor: Floor, cli: Cli) -> None:
    code, _, err = cli("check", "-c", floor.config)
    assert code == 2 and "environment variable P is not set" in err
