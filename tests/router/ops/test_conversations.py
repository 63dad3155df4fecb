"""`omnirouter conversations show ID|#REF`: transcript in order, routing history with reasons."""

from __future__ import annotations

import orjson

from tests.router.ops.conftest import Cli, Floor


def test_show_by_ref_has_the_transcript_in_order_and_every_reason(floor: Floor, cli: Cli) -> None:
    ref = floor.refs["<inv@x>"]
    code, out, err = cli("conversations", "show", f"#{ref}", "-c", floor.config)
    assert (code, err) == (0, "")
    assert f"#{ref}" in out and "customer Eva [email:eva@shop.test]" in out
    assert "owner ana, queue billing" in out
    transcript = out[out.index("transcript") : out.index("routing history")]
    said = [line for line in transcript.splitlines() if "2026-03-02" in line]
    # Time, side, kind and text, in the order they happened.
    assert [line.split("│")[1].strip() for line in said] == [
        "customer Eva",
        "system omnirouter",  # the acknowledgement
        "agent Ana",
    ]
    assert said[0].startswith("2026-03-02 10:00:00") and "My invoice is wrong" in said[0]
    assert said[2].startswith("2026-03-02 10:05:00") and "Fixed, sorry!" in said[2]
    history = out[out.index("routing history") :]
    assert "assigned to ana" in history
    assert "best_available: least occupied qualified agent" in history
    assert 'skills={"billing":2}' in history
    assert "accepted by ana" in history


def test_show_by_id_as_json_and_a_ref_in_any_case(floor: Floor, cli: Cli) -> None:
    conv_id = floor.ids["<c@x>"]
    code, out, _ = cli("conversations", "show", conv_id, "-c", floor.config, "--json")
    shown = orjson.loads(out)
    assert code == 0
    assert shown["id"] == conv_id and shown["ref"] == floor.refs["<c@x>"]
    assert shown["customer"]["identities"] == ["email:raj@shop.test"]
    assert shown["transcript"][0]["text"] == "This is unacceptable!"
    whats = [h["what"] for h in shown["history"]]
    assert "incident: complaint" in whats
    lower = floor.refs["<c@x>"].lower()
    code, out, _ = cli("conversations", "show", lower, "-c", floor.config, "--json")
    assert (code, orjson.loads(out)["id"]) == (0, conv_id)


def test_an_unknown_conversation_is_exit_2_with_a_reason(floor: Floor, cli: Cli) -> None:
    code, out, err = cli("conversations", "show", "#NOPE123", "-c", floor.config)
    assert (code, out) == (2, "")
    assert "no conversation '#NOPE123'" in err


def test_customer_text_is_shown_as_written_not_as_markup(floor: Floor, cli: Cli) -> None:
    code, out, _ = cli("conversations", "show", floor.ids["<inv@x>"], "-c", floor.config)
    assert code == 0 and "[Hello] My invoice is wrong" in out  # the subject in brackets
