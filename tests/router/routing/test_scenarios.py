"""Routing scenarios through `simulate`'s engine: one per behaviour of the router issue."""

from __future__ import annotations

from typing import Any

from router.channels import delivery_failed
from router.config import Config, parse_config
from tests.router.routing.scenarios import CONFIG, Run, at, mail


async def test_new_message_is_acknowledged_on_its_channel_and_assigned(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<t1@x>", "My invoice is wrong, please refund"))
    [assign] = run.actions("assign")
    assert assign.agent == "ana"  # ben has billing 2 but the billing queue needs... both do;
    assert assign.reason["rule"] == "best_available"
    [ack] = run.out("outbound.mail")
    assert ack.thread_key == "<t1@x>" and ack.channel == "mail"
    assert ack.automated is not None and ack.automated.auto
    assert ack.reply_context == {"to": ["eva@shop.test"], "message_id": "<t1@x>"}
    assert "within" in ack.text
    [delivery] = run.out("agent.mail")
    ctx = delivery.delivery.model_dump(mode="json")["context"]
    assert ctx["customer"]["identities"] == [{"kind": "email", "value": "eva@shop.test"}]
    assert ctx["transcript"][0]["text"] == "My invoice is wrong, please refund"
    assert delivery.delivery.model_dump(mode="json")["reason"]["rule"] == "best_available"


async def test_same_envelope_twice_has_one_effect(run: Run) -> None:
    event = mail("eva@shop.test", "<t1@x>", "refund please", id="native-1")
    await run.step(**event)
    published = len(run.sim.published)
    again = await run.step(**event)
    assert [d.action for d in again] == ["duplicate"]
    assert len(run.sim.published) == published


async def test_complaint_skips_free_unqualified_agent_for_busy_qualified_one(run: Run) -> None:
    # Ana (the only complaints-qualified agent) is busy with an email.
    await run.step(**mail("first@shop.test", "<a@x>", "refund for my invoice"))
    assert run.actions("assign")[0].agent == "ana"
    await run.step(**mail("angry@shop.test", "<b@x>", "This is unacceptable, I want to complain"))
    [classified] = [d for d in run.actions("classify") if d.reason["complaint"]]
    [queued] = run.actions("queue")
    assert queued.reason["skipped"]["ben"].startswith("needs complaints")
    assert queued.reason["skipped"]["ana"].startswith("at capacity")
    assert [i.kind for i in await run.incidents()] == ["complaint"]
    # Ana resolves her first conversation: the complaint goes to her, not to free Ben.
    await run.step(agent="ana", command="resolve", conversation="mail/<a@x>")
    drained = [d for d in run.actions("assign") if d.conversation_id == classified.conversation_id]
    assert [d.agent for d in drained] == ["ana"]


async def test_same_customer_on_email_then_telegram_reaches_the_same_agent(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<t1@x>", "question about my invoice"))
    conv = run.actions("assign")[0]
    assert conv.agent == "ana"
    await run.step(
        agent="ana", command="link", args=["phone", "+34 600 111 222"], conversation="mail/<t1@x>"
    )
    assert run.actions("link")
    await run.step(
        at=at(5),
        channel="tg",
        **{
            "from": "777",
            "name": "Eva",
            "thread": "777",
            "text": "hola, soy Eva",
            # Her own contact, shared (the connector checked it is the sender's).
            "identities": [{"kind": "phone", "value": "+34600111222"}],
        },
    )
    second = [d for d in run.actions("assign") if d.conversation_id != conv.conversation_id]
    assert [d.agent for d in second] == ["ana"]
    assert second[0].reason["rule"] == "last_agent"
    # One customer, two conversations, each on its own channel.
    delivery = run.out("agent.mail")[-1].delivery.model_dump(mode="json")["context"]
    assert {i["kind"] for i in delivery["customer"]["identities"]} == {"email", "phone", "telegram"}
    assert [o["channel"] for o in delivery["other_conversations"]] == ["mail"]


async def test_waits_for_previous_agent_then_widens(run: Run) -> None:
    await run.step(**mail("eva@shop.test", "<t1@x>", "invoice question"))
    assert run.actions("assign")[-1].agent == "ana"
    await run.step(agent="ana", command="resolve", conversation="mail/<t1@x>")
    # Ana becomes busy on the chat with someone else (Ben is away meanwhile).
    await run.step(agent="ben", command="away")
    await run.step(channel="chat", **{"from": "visitor-1", "thread": "s1", "text": "hello"})
    assert run.actions("assign")[-1].agent == "ana"
    await run.step(agent="ben", command="available")
    # Eva comes back on the chat, stating her email in the pre-chat form.
    await run.step(
        at=at(1),
        channel="chat",
        **{
            "from": "visitor-9",
            "thread": "s9",
            "text": "hi again about my invoice",
            "identities": [{"kind": "email", "value": "eva@shop.test"}],
        },
    )
    waiting = run.actions("queue")[-1]
    assert waiting.reason["rule"] == "waiting_for_last_agent"
    assert waiting.reason["agent"] == "ana"
    # After the bounded wait (2m), anyone qualified with capacity on the chat takes it.
    await run.step(at=at(5))
    assert run.actions("widen")
    assert run.actions("assign")[-1].agent == "ben"
    assert run.actions("assign")[-1].conversation_id == waiting.conversation_id


async def test_aging_lets_an_old_normal_item_overtake_a_newer_high_one(run: Run) -> None:
    # Both agents busy on email.
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(at=at(0), **mail("old@shop.test", "<old@x>", "refund"))
    await run.step(at=at(15), **mail("new@shop.test", "<new@x>", "urgent refund"))
    old_id = run.actions("queue")[0].conversation_id
    new_id = run.actions("queue")[1].conversation_id
    assert run.actions("queue")[1].priority == "high"
    await run.step(at=at(25))
    await run.step(agent="ben", command="resolve", conversation="mail/<b@x>")
    assert run.actions("assign")[-1].conversation_id == old_id  # 1 + 25/10 > 2 + 10/10
    await run.step(agent="ana", command="resolve", conversation="mail/<a@x>")
    assert run.actions("assign")[-1].conversation_id == new_id


async def test_high_priority_goes_first_before_aging_catches_up(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(at=at(1), **mail("old@shop.test", "<old@x>", "refund"))
    await run.step(at=at(3), **mail("new@shop.test", "<new@x>", "urgent refund"))
    new_id = run.actions("queue")[1].conversation_id
    await run.step(at=at(4), agent="ben", command="resolve", conversation="mail/<b@x>")
    assert run.actions("assign")[-1].conversation_id == new_id


async def test_a_reloaded_aging_step_ranks_the_waiting_again(run: Run) -> None:
    from datetime import timedelta

    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(at=at(1), **mail("old@shop.test", "<old@x>", "refund"))
    await run.step(at=at(3), **mail("new@shop.test", "<new@x>", "urgent refund"))
    old_id = run.actions("queue")[0].conversation_id
    # As above the new high one would go first; with aging every minute, the old one has
    # overtaken it by minute 4 (1 + 3/1 > 2 + 1/1), and the stored ranks must say so.
    config = run.sim.engine.config
    faster = config.routing.model_copy(update={"aging_step": timedelta(minutes=1)})
    await run.sim.engine.configure(config.model_copy(update={"routing": faster}), run.sim.clock)
    await run.step(at=at(4), agent="ben", command="resolve", conversation="mail/<b@x>")
    assert run.actions("assign")[-1].conversation_id == old_id


# An agent an operator adds while the router runs.
A5 = """\
  - id: a5
    name: Al
    skills: {billing: 3}
    languages: [en]
    capacity: {email: 2}
    sink: {type: email, channel: mail, address: a5@corp.test}
"""


def config_with_a5() -> Config:
    text = CONFIG.read_text().replace("\nrouting:\n", "\n" + A5 + "routing:\n", 1)
    return parse_config(text, file=str(CONFIG), env={})


async def test_an_agent_added_by_a_reload_gets_work(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(**mail("c@shop.test", "<c@x>", "refund"))  # waits: ana and ben are busy
    [waiting] = run.actions("queue")
    await run.sim.engine.configure(config_with_a5(), run.sim.clock)
    # The next tick sees a5's capacity appear and gives them the waiting conversation.
    await run.step(at=at(1))
    last = run.actions("assign")[-1]
    assert (last.conversation_id, last.agent) == (waiting.conversation_id, "a5")
    # And a new one, routed at once.
    await run.step(**mail("d@shop.test", "<d@x>", "refund"))
    assert run.actions("assign")[-1].agent == "a5"
    assert len(run.actions("queue")) == 1


async def test_an_agent_without_a_row_is_refused_with_that_reason(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    # The routing context alone, without the rows `Engine.configure` creates (what a
    # reload did before).
    run.sim.engine.ctx.configure(config_with_a5())
    await run.step(**mail("c@shop.test", "<c@x>", "refund"))
    [queued] = run.actions("queue")
    assert queued.reason["detail"] == "a5 has no row in the store (configured but never created)"


async def test_sla_warning_tells_customer_escalates_and_breach_is_an_incident(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(**mail("c@shop.test", "<c@x>", "refund"))  # waits: nobody free
    await run.step(at=at(31))  # warning at 50% of 1h: no answer in any of the three yet
    escalations = run.actions("escalate")
    assert len(escalations) == 3
    assert all(e.reason["supervisors"] == ["ana"] for e in escalations)
    assert any(
        e.meta["purpose"] == "on_it" and e.thread_key == "<c@x>" for e in run.out("outbound.mail")
    )
    await run.step(at=at(61))
    assert [i.kind for i in await run.incidents()] == ["sla_breach", "sla_breach", "sla_breach"]


async def test_first_reply_stops_the_sla_clock(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(at=at(2), agent="ana", reply="Done, refunded.", conversation="mail/<a@x>")
    [reply] = [e for e in run.out("outbound.mail") if e.meta["purpose"] == "reply"]
    assert reply.text == "Done, refunded." and reply.thread_key == "<a@x>"
    # The reply context comes back unchanged; the channel makes "Re:" and its headers.
    assert reply.reply_context == {"to": ["a@shop.test"], "message_id": "<a@x>"}
    assert reply.subject == "Hello"
    await run.step(at=at(120))
    assert not run.actions("escalate") and not run.actions("breach")


async def test_reply_from_another_agent_or_with_a_forged_token_is_rejected(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(agent="ben", reply="I'll take it", conversation="mail/<a@x>")
    await run.step(agent="ana", reply="hi", token="deadbeef.forged")
    assert [d.reason["detail"] for d in run.actions("reject")] == [
        "conversation is owned by another agent",
        "missing or invalid conversation token",
    ]
    assert not [e for e in run.out("outbound.mail") if e.meta["purpose"] == "reply"]
    notices = [
        e
        for e in run.out("agent.mail")
        if e.delivery.model_dump(mode="json")["event"] == "rejected"
    ]
    assert len(notices) == 2


async def test_transfer_tells_customer_once_and_carries_the_note(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund please"))
    await run.step(
        agent="ana",
        command="transfer",
        args=["ben", "customer", "wants", "tech"],
        conversation="mail/<a@x>",
    )
    assert run.actions("assign")[-1].agent == "ben"
    told = [e for e in run.out("outbound.mail") if e.meta["purpose"] == "transfer"]
    assert len(told) == 1 and "specialist" in told[0].text
    note = run.out("agent.mail")[-1].delivery.model_dump(mode="json")
    assert note["agent"]["id"] == "ben" and note["note"] == "customer wants tech"


async def test_bad_follow_up_answer_reopens_to_a_senior_agent(run: Run) -> None:
    await run.step(**mail("x@shop.test", "<x@x>", "refund"))
    await run.step(**mail("y@shop.test", "<y@x>", "refund"))
    assert [d.agent for d in run.actions("assign")] == ["ana", "ben"]
    await run.step(agent="ana", command="resolve", conversation="mail/<x@x>")
    await run.step(agent="ben", command="resolve", conversation="mail/<y@x>")
    await run.step(at=at(61))
    followups = [e for e in run.out("outbound.mail") if e.meta["purpose"] == "followup"]
    assert sorted(e.thread_key for e in followups) == ["<x@x>", "<y@x>"]
    assert "(Ben)" in next(e.text for e in followups if e.thread_key == "<y@x>")
    await run.step(at=at(70), **mail("y@shop.test", "<y@x>", "No, I was charged again"))
    reopened = run.actions("reopen")[-1]
    assert reopened.reason["skills"]["complaints"] == 4
    assert reopened.priority == "high"
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id) == ("ana", reopened.conversation_id)
    assert "bad_satisfaction" in [i.kind for i in await run.incidents()]


async def test_good_follow_up_answer_closes(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(agent="ana", command="resolve", conversation="mail/<a@x>")
    await run.step(at=at(61))
    await run.step(at=at(62), **mail("a@shop.test", "<a@x>", "Thanks, all good!"))
    assert run.actions("close")


async def test_away_agent_gets_nothing_and_gets_queue_on_return(run: Run) -> None:
    await run.step(agent="ana", command="away")
    await run.step(agent="ben", command="away")
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    assert run.actions("queue") and not run.actions("assign")
    await run.step(agent="ben", command="available")
    assert run.actions("assign")[-1].agent == "ben"


async def test_bounce_of_our_mail_is_a_delivery_incident_told_to_the_owner(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    [ack] = run.out("outbound.mail")
    await run.step(
        channel="mail",
        **{
            "from": "mailer-daemon@shop.test",
            "thread": "<dsn1@x>",
            "text": "Delivery failed",
            "automated": {
                "auto": True,
                "bounce": {
                    "envelope_id": ack.id,
                    "original_id": f"<omni.{ack.id}@corp.test>",
                    "recipients": [
                        {"address": "a@shop.test", "status": "5.1.1", "diagnostic": "no such user"}
                    ],
                },
            },
        },
    )
    [failed] = run.actions("delivery_failed")
    assert failed.agent == "ana" and "5.1.1" in failed.reason["detail"]
    assert [i.kind for i in await run.incidents()] == ["delivery_failure"]
    told = run.out("agent.mail")[-1].delivery.model_dump(mode="json")
    assert told["event"] == "delivery_failed" and told["agent"]["id"] == "ana"
    # The bounce opened no conversation and sent no acknowledgement.
    assert len(run.out("outbound.mail")) == 1


async def test_connector_reported_failure_is_an_incident(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    [ack] = run.out("outbound.mail")
    event = delivery_failed("mail", ack, "550 mailbox unavailable", run.sim.clock)
    run.decisions += await run.sim.engine.handle(event, run.sim.clock)
    run.decisions += await run.sim.drain_outbox()
    [failed] = run.actions("delivery_failed")
    assert failed.conversation_id == ack.conversation_id
    told = run.out("agent.mail")[-1].delivery.model_dump(mode="json")
    assert told["event"] == "delivery_failed" and told["agent"]["id"] == "ana"
    [incident] = await run.incidents()
    assert incident.kind == "delivery_failure" and "550" in incident.cause


async def test_list_mail_opens_no_conversation_and_gets_no_ack(run: Run) -> None:
    await run.step(
        **mail(
            "news@shop.test",
            "<n@x>",
            "Our newsletter",
            automated={"auto": True, "reasons": ["List-Id"]},
        )
    )
    assert [d.action for d in run.decisions] == ["ignore"]
    assert run.out("outbound.mail") == []


def tg(sender: str, text: str) -> dict[str, Any]:
    return {"channel": "tg", "from": sender, "thread": sender, "text": text}


async def test_assignment_not_taken_in_time_goes_to_someone_else(run: Run) -> None:
    await run.step(agent="ben", command="away")
    await run.step(**tg("901", "the app shows an error and crashes"))
    first = run.actions("assign")[-1]
    assert first.agent == "cy"
    await run.step(agent="ben", command="available")  # Ben is back, but Cy owns it now
    await run.step(at=at(2))  # routing.assignment_timeout: 90s
    [reassign] = run.actions("reassign")
    assert reassign.agent == "cy"
    last = run.actions("assign")[-1]
    assert (last.agent, last.conversation_id) == ("ben", first.conversation_id)
    assert last.reason["skipped"]["cy"] == "did not take it in time"


async def test_accepted_assignment_stays(run: Run) -> None:
    await run.step(agent="ben", command="away")
    await run.step(**tg("902", "error on login"))
    assert run.actions("assign")[-1].agent == "cy"
    await run.step(agent="cy", command="accept", conversation="tg/902")
    await run.step(at=at(5))
    assert not run.actions("reassign")
    assert run.actions("accept")


async def test_failed_delivery_to_an_agent_is_an_incident_and_is_not_resent(run: Run) -> None:
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    [delivery] = run.out("agent.mail")
    deliveries_before = len(run.out("agent.mail"))
    event = delivery_failed("mail", delivery, "550 no such agent mailbox", run.sim.clock)
    run.decisions += await run.sim.engine.handle(event, run.sim.clock)
    run.decisions += await run.sim.drain_outbox()  # publish what the event produced
    [failed] = run.actions("delivery_failed")
    assert failed.conversation_id == delivery.conversation_id
    [incident] = await run.incidents()
    assert incident.conversation_id == delivery.conversation_id
    # Telling the agent the same way would only fail again (and loop).
    assert len(run.out("agent.mail")) == deliveries_before
