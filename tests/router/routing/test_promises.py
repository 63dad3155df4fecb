"""Agents' promises to customers: read, shown, reminded, kept or broken once, and kept
through transfers and restarts (router/routing/promises.py, promised.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from router.config import BusinessHoursConfig, load_config, parse_config
from router.envelope import Envelope
from router.errors import ConfigError
from router.routing.promised import PromiseError, due_phrase, parse, remind_at
from router.simulate import Simulation
from router.simulate.outputs import Output
from router.store import open_store
from tests.router.routing.office import SHIPPED, scenario
from tests.router.routing.scenarios import CONFIG, T0, Run, at, mail

START = datetime.fromisoformat(T0)  # Monday 2 March 2026, 10:00 UTC; agents always on
MADRID = "Europe/Madrid"
OFFICE = BusinessHoursConfig.model_validate(
    {
        "timezone": MADRID,
        "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    }
)


def madrid(text: str) -> datetime:
    """A wall time in Madrid in March (before the clocks change: UTC+1)."""
    return datetime.fromisoformat(text + "+01:00")


# --- reading the due time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "words", "due"),
    [
        # A time of day: today, or once past, the next working day.
        ("2026-03-02T10:00", "17:00 call back", "2026-03-02T17:00"),
        ("2026-03-02T19:00", "17:00 call back", "2026-03-03T17:00"),
        ("2026-03-06T19:00", "17:00 call back", "2026-03-09T17:00"),  # Friday -> Monday
        ("2026-03-07T11:00", "9:30 call back", "2026-03-09T09:30"),  # Saturday -> Monday
        # Hours and minutes of open time.
        ("2026-03-06T17:00", "3h send the label", "2026-03-09T11:00"),
        ("2026-03-02T10:00", "1h30m send the label", "2026-03-02T11:30"),
        ("2026-03-02T17:50", "45m send the label", "2026-03-03T09:35"),
        # Working days, at the same time of day (from the next opening after hours).
        ("2026-03-02T10:00", "2d replacement shipped", "2026-03-04T10:00"),
        ("2026-03-06T10:00", "2d replacement shipped", "2026-03-10T10:00"),
        ("2026-03-07T11:00", "2d replacement shipped", "2026-03-11T09:00"),
        # ISO 8601, in the agent's zone unless it says its own.
        ("2026-03-02T10:00", "2026-03-03T17:00 refund", "2026-03-03T17:00"),
        ("2026-03-02T10:00", "2026-03-03 17:00 refund", "2026-03-03T17:00"),
        ("2026-03-02T10:00", "2026-03-03T16:00+00:00 refund", "2026-03-03T17:00"),
    ],
)
def test_the_due_time_is_read_in_the_agents_zone_and_schedule(
    now: str, words: str, due: str
) -> None:
    got, text = parse(words, madrid(now), MADRID, OFFICE)
    assert got == madrid(due) and got.tzinfo == UTC
    assert text and words.endswith(text) and not text[0].isdigit()  # the words after the due


def test_without_a_schedule_durations_are_wall_clock_and_days_are_days() -> None:
    now = madrid("2026-03-06T17:00")  # a Friday
    assert parse("3h x", now, MADRID, None)[0] == madrid("2026-03-06T20:00")
    assert parse("2d x", now, MADRID, None)[0] == madrid("2026-03-08T17:00")
    assert parse("16:00 x", now, MADRID, None)[0] == madrid("2026-03-07T16:00")


def test_the_text_is_what_follows_the_due_time() -> None:
    _, text = parse("2026-03-03 17:00   call back  with the refund", START, MADRID, OFFICE)
    assert text == "call back  with the refund"
    assert parse("17:00 call back", START, MADRID, OFFICE)[1] == "call back"


@pytest.mark.parametrize(
    ("words", "why"),
    [
        ("", "usage: promise"),
        ("17:00", "usage: promise"),
        ("soon call back", "'soon' is not a due time"),
        ("2026-03-01T10:00 call back", "not in the future"),
        ("400d call back", "more than a year ahead"),
        ("9999h call back", "more than a year ahead"),
        ("0001-01-01T00:30+14:00 call back", "not in the future"),
        ("2026-03-03 call back", "give a time too"),
        ("17:00 " + "x" * 501, "promise too long"),
    ],
)
def test_what_is_not_a_promise_says_why(words: str, why: str) -> None:
    with pytest.raises(PromiseError, match=why):
        parse(words, madrid("2026-03-02T10:00"), MADRID, OFFICE)


def test_long_spans_on_a_thin_schedule_are_refused_without_walking_the_centuries() -> None:
    # Open one minute a week: 99999 minutes of open time would be two thousand years.
    thin = BusinessHoursConfig.model_validate(
        {"timezone": MADRID, "weekly": {"mon": ["09:00-09:01"]}}
    )
    for words in ("99999m x", "366d x", "53m x"):
        with pytest.raises(PromiseError, match="more than a year ahead"):
            parse(words, madrid("2026-03-02T10:00"), MADRID, thin)
    assert parse("52m x", madrid("2026-03-02T10:00"), MADRID, thin)[0] < madrid("2027-03-03T00:00")


def test_the_reminder_comes_before_the_due_time_or_at_80_percent() -> None:
    made = START
    before = timedelta(minutes=30)
    assert remind_at(made, made + timedelta(hours=7), before) == made + timedelta(hours=6.5)
    assert remind_at(made, made + timedelta(minutes=20), before) == made + timedelta(minutes=16)


def test_the_due_time_told_to_the_customer() -> None:
    due = madrid("2026-03-02T17:00")
    assert due_phrase(due, due, "en", MADRID) == "today at 17:00"
    assert due_phrase(due, due, "es", MADRID) == "hoy a las 17:00"
    late = due + timedelta(days=1)
    assert due_phrase(due, late, "en", MADRID) == "on 2 March at 17:00"


def test_the_broken_template_must_be_defined_and_may_name_the_promise() -> None:
    base = "version: 1\nrouting: {promises: {broken_template: late}}\n"
    with pytest.raises(ConfigError, match=r"routing\.promises\.broken_template: template 'late'"):
        parse_config(base, env={})
    late = 'templates: {late: {en: "{promise} by {promise_due}"}}\n'
    config = parse_config(base + late, env={})
    assert config.routing.promises.broken_template == "late"


# --- the routing scenarios -----------------------------------------------------------


def deliveries(run: Run, agent: str, event: str) -> list[Envelope]:
    return [
        e
        for e in run.out("agent.mail")
        if e.delivery is not None and e.delivery.agent.id == agent and e.delivery.event == event
    ]


def updates(run: Run) -> list[Envelope]:
    return [e for e in run.out("outbound.mail") if e.meta.get("purpose") == "promise_update"]


async def broken_incidents(run: Run) -> list[Any]:
    return [i for i in await run.incidents() if i.kind == "broken_promise"]


async def ben_has_it(run: Run) -> str:
    """Eve's mail about an error goes to Ben (tech); its conversation id."""
    await run.step(**mail("eve@example.com", "t1", "The app shows an error"), at=at(0))
    [assigned] = run.actions("assign")
    assert assigned.agent == "ben" and assigned.conversation_id
    return assigned.conversation_id


def promise(agent: str, *args: str, minutes: float, thread: str = "t1") -> dict[str, Any]:
    return {
        "agent": agent,
        "command": "promise",
        "args": list(args),
        "conversation": f"mail/{thread}",
        "at": at(minutes),
    }


def kept(agent: str, *args: str, minutes: float) -> dict[str, Any]:
    return {
        "agent": agent,
        "command": "kept",
        "args": list(args),
        "conversation": "mail/t1",
        "at": at(minutes),
    }


def shown(env: Envelope) -> list[dict[str, Any]]:
    assert env.delivery is not None
    promises: list[dict[str, Any]] = env.delivery.context["promises"]
    return promises


async def test_a_promise_is_shown_in_every_later_delivery(run: Run) -> None:
    conv = await ben_has_it(run)
    # Email agents write `#promise 17:00 call back ...`: the words arrive as arguments.
    await run.step(**promise("ben", "17:00", "call", "back", "with", "the", "refund", minutes=5))
    [made] = run.actions("promise")
    assert made.conversation_id == conv and made.agent == "ben"
    assert made.reason["due"] == "2026-03-02T17:00:00+00:00"
    assert made.reason["text"] == "call back with the refund"
    await run.step(**mail("eve@example.com", "t1", "Any news?"), at=at(10))
    [message] = deliveries(run, "ben", "message")
    [entry] = shown(message)
    assert (entry["text"], entry["due"], entry["owner"], entry["made_by"], entry["state"]) == (
        "call back with the refund",
        "2026-03-02T17:00:00+00:00",
        "ben",
        "ben",
        "open",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["17:00", "call", "back", "with", "the", "refund"],  # a mail's `#promise` line, by word
        ["17:00", "call back with the refund"],  # Telegram's `/promise`: the due, then the rest
        ["2026-03-02T17:00:00+00:00", "call back with the refund"],  # a webhook tool's args
    ],
)
async def test_each_tools_arguments_make_the_same_promise(run: Run, args: list[str]) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", *args, minutes=5))
    [made] = run.actions("promise")
    assert (made.reason["due"], made.reason["text"]) == (
        "2026-03-02T17:00:00+00:00",
        "call back with the refund",
    )


async def test_the_owner_is_reminded_before_it_falls_due(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
    await run.step(at="2026-03-02T16:29:59+00:00")
    assert deliveries(run, "ben", "promise_due") == []
    await run.step(at="2026-03-02T16:30:00+00:00")  # remind_before: 30 minutes
    [reminder] = deliveries(run, "ben", "promise_due")
    assert reminder.delivery is not None
    assert reminder.delivery.reason["due"] == "2026-03-02T17:00:00+00:00"
    assert [p["state"] for p in shown(reminder)] == ["open"]
    [decided] = run.actions("promise_reminder")
    assert decided.agent == "ben"


async def test_kept_closes_it_no_reminder_and_nothing_broken(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
    await run.step(**kept("ben", minutes=60))
    [done] = run.actions("kept")
    assert done.agent == "ben" and len(done.reason["promises"]) == 1
    await run.step(at="2026-03-03T10:00:00+00:00")
    assert deliveries(run, "ben", "promise_due") == []
    assert run.actions("promise_broken") == [] and updates(run) == []
    assert await broken_incidents(run) == []
    await run.step(**mail("eve@example.com", "t1", "Thanks!"))
    [entry] = shown(deliveries(run, "ben", "message")[-1])
    assert entry["state"] == "kept" and entry["closed_at"]


async def test_kept_with_an_id_closes_that_one_only(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "12:00", "send", "the", "label", minutes=5))
    await run.step(**promise("ben", "17:00", "call", "back", minutes=6))
    first, second = (d.reason["promise"] for d in run.actions("promise"))
    await run.step(**kept("ben", str(first), minutes=30))
    assert run.actions("kept")[0].reason["promises"] == [first]
    await run.step(at="2026-03-02T18:00:00+00:00")
    [broken] = run.actions("promise_broken")
    assert broken.reason["promise"] == second


async def test_a_broken_promise_tells_the_customer_the_supervisor_and_the_register_once(
    run: Run,
) -> None:
    conv = await ben_has_it(run)
    await run.step(**promise("ben", "17:00", "call", "back", "with", "the", "refund", minutes=5))
    await run.step(at="2026-03-02T16:59:59+00:00")
    assert run.actions("promise_broken") == []
    await run.step(at="2026-03-02T17:00:00+00:00")
    [update] = updates(run)
    assert update.channel == "mail" and update.thread_key == "t1"
    assert update.conversation_id == conv and update.sender.role == "system"
    assert update.text.startswith("Hello Eve, we promised you “call back with the refund”")
    assert "by today at 17:00" in update.text and "still on it" in update.text
    [notice] = deliveries(run, "ana", "promise_broken")  # ana is the supervisor
    assert notice.delivery is not None and notice.delivery.reason["promise"]
    assert [p["state"] for p in shown(notice)] == ["broken"]
    [incident] = await broken_incidents(run)
    assert incident.conversation_id == conv
    # `simulate` reports the supervisors' delivery as a notice.
    told = [
        (e.item.output, e.item.fields["agent"])
        for e in run.sim.timeline
        if isinstance(e.item, Output) and e.item.fields.get("event") == "promise_broken"
    ]
    assert told == [("supervisor_notice", "ana")]
    assert incident.details["made_by"] == "ben" and incident.details["customer_told"] is True
    # Nothing more however long it stays unkept, and `kept` no longer applies.
    await run.step(at="2026-03-04T10:00:00+00:00")
    await run.step(**kept("ben", minutes=3000))
    assert len(updates(run)) == 1 and len(deliveries(run, "ana", "promise_broken")) == 1
    assert len(await broken_incidents(run)) == 1 and len(run.actions("promise_broken")) == 1
    [refused] = run.actions("reject")
    assert refused.reason["code"] == "kept"


async def test_no_update_when_the_owner_has_just_written_to_the_customer(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
    await run.step(agent="ben", reply="Still checking, Eve.", conversation="mail/t1", at=at(400))
    await run.step(at="2026-03-02T17:00:00+00:00")  # 20 minutes after the reply
    assert updates(run) == []
    assert len(deliveries(run, "ana", "promise_broken")) == 1
    [incident] = await broken_incidents(run)
    assert incident.details["customer_told"] is False


async def test_a_reply_before_the_promise_does_not_count_as_news(run: Run) -> None:
    await ben_has_it(run)
    await run.step(agent="ben", reply="Looking into it.", conversation="mail/t1", at=at(3))
    await run.step(**promise("ben", "10:25", "call", "back", minutes=5))
    await run.step(at=at(25))
    assert len(updates(run)) == 1


async def test_a_spanish_customer_is_told_in_spanish(run: Run) -> None:
    text = "Hola, mi pedido no ha llegado todavía y necesito ayuda"
    await run.step(**mail("luz@example.com", "t2", text), at=at(0))
    [assigned] = run.actions("assign")
    await run.step(**promise(assigned.agent or "", "11:00", "llamarte", minutes=5, thread="t2"))
    await run.step(at=at(60))
    [update] = updates(run)
    assert update.text.startswith("Hola Luz, te prometimos «llamarte» para hoy a las 11:00")
    assert update.meta["language"] == "es"


async def test_the_configured_template_is_used(tmp_path: Path) -> None:
    config = tmp_path / "promises.yaml"
    config.write_text(
        CONFIG.read_text()
        .replace(
            "  last_agent_wait: 2m\n",
            "  last_agent_wait: 2m\n  promises: {broken_template: late, remind_before: 1h}\n",
        )
        .replace(
            "templates:\n",
            'templates:\n  late:\n    en: "{customer_name}: {promise}, due {promise_due}."\n',
        )
    )
    async with restartable(tmp_path, config) as run:
        await ben_has_it(run)
        await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
        await run.step(at="2026-03-02T16:00:00+00:00")  # remind_before: 1 hour
        assert len(deliveries(run, "ben", "promise_due")) == 1
        await run.step(at="2026-03-02T17:00:00+00:00")
        [update] = updates(run)
        assert update.text == "Eve: call back, due today at 17:00."
        assert update.meta["template"] == "late"


async def test_a_bad_promise_is_refused_and_the_agent_told(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "tomorrowish", "call", "back", minutes=5))
    await run.step(**kept("ben", minutes=6))
    usage, none_open = run.actions("reject")
    assert usage.reason["code"] == "promise_usage" and "not a due time" in usage.reason["detail"]
    assert none_open.reason["code"] == "kept"
    assert len(deliveries(run, "ben", "rejected")) == 2
    assert run.actions("promise") == []


async def test_after_a_transfer_the_new_owner_sees_it_and_is_reminded(run: Run) -> None:
    await run.step(**mail("eve@example.com", "t1", "Where is my parcel?"), at=at(0))
    [first] = run.actions("assign")
    owner = first.agent or ""
    other = "ben" if owner == "ana" else "ana"
    await run.step(**promise(owner, "17:00", "call", "back", minutes=5))
    await run.step(
        agent=owner,
        command="transfer",
        args=[other, "over to you"],
        conversation="mail/t1",
        at=at(10),
    )
    assert [d.agent for d in run.actions("assign")] == [owner, other]
    [assigned] = deliveries(run, other, "assigned")
    [entry] = shown(assigned)
    assert (entry["text"], entry["made_by"], entry["owner"], entry["state"]) == (
        "call back",
        owner,
        other,
        "open",
    )
    # The text the new owner reads (mail, Telegram, a webhook's `text`) says it too.
    assert "Promised (#" in assigned.text and ": call back" in assigned.text
    await run.step(at="2026-03-02T16:30:00+00:00")
    assert len(deliveries(run, other, "promise_due")) == 1
    assert deliveries(run, owner, "promise_due") == []


async def test_a_promise_survives_a_config_reload(run: Run) -> None:
    await ben_has_it(run)
    await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
    reloaded = load_config(CONFIG, env={})
    await run.sim.engine.configure(reloaded, START + timedelta(minutes=6))
    await run.step(at="2026-03-02T16:30:00+00:00")
    assert len(deliveries(run, "ben", "promise_due")) == 1
    await run.step(at="2026-03-02T17:00:00+00:00")
    assert len(updates(run)) == 1


# --- across a restart ------------------------------------------------------------------


class restartable:
    """A scenario on a store file that outlives its engine: `restart()` closes the store
    and starts a new simulation (engine, config, connection) on the same file."""

    def __init__(self, tmp: Path, config: Path = CONFIG) -> None:
        self.url = f"sqlite:///{tmp / 'store.sqlite3'}"
        self.config = config
        self.run: Run | None = None

    async def _open(self, start: datetime) -> Run:
        store = await open_store(self.url)
        sim = Simulation(load_config(self.config, env={}), store)
        await sim.start(start)
        return Run(sim, [])

    async def restart(self, start: datetime) -> Run:
        assert self.run is not None
        await self.run.sim.store.close()
        self.run = await self._open(start)
        return self.run

    async def __aenter__(self) -> Run:
        self.run = await self._open(START)
        return self.run

    async def __aexit__(self, *exc: object) -> None:
        if self.run is not None:
            await self.run.sim.store.close()


async def test_a_promise_survives_a_restart(tmp_path: Path) -> None:
    box = restartable(tmp_path)
    async with box as run:
        await ben_has_it(run)
        await run.step(**promise("ben", "17:00", "call", "back", minutes=5))
        run = await box.restart(START + timedelta(hours=1))
        await run.step(at="2026-03-02T16:30:00+00:00")
        assert len(deliveries(run, "ben", "promise_due")) == 1
        run = await box.restart(datetime.fromisoformat("2026-03-02T16:45:00+00:00"))
        await run.step(at="2026-03-02T17:00:00+00:00")
        assert len(updates(run)) == 1 and len(deliveries(run, "ana", "promise_broken")) == 1
        assert len(await broken_incidents(run)) == 1
        assert deliveries(run, "ben", "promise_due") == []  # reminded once, before


async def test_the_shipped_config_counts_the_agents_working_time_and_speaks_spanish(
    tmp_path: Path,
) -> None:
    # Shipped config: Ana (Spanish, office hours in Madrid with lunch 14:00-15:00) takes
    # a Spanish chat; `4h` at 10:05 is 15:05 (the lunch hour does not count), and the
    # shipped `promise_broken` template tells the customer in Spanish.
    async with scenario(tmp_path, "2026-03-09T09:50:00+01:00", SHIPPED) as run:
        chat = {"channel": "site-chat", "from": "visitor-1", "thread": "s1"}
        text = "Hola, mi pedido no ha llegado todavía y necesito ayuda"
        await run.step(**chat, text=text, at="2026-03-09T10:00:00+01:00")
        [assigned] = run.actions("assign")
        assert assigned.agent == "ana"
        await run.step(
            agent="ana",
            command="promise",
            args=["4h", "revisar", "el", "envío"],
            conversation="site-chat/s1",
            at="2026-03-09T10:05:00+01:00",
        )
        [made] = run.actions("promise")
        assert datetime.fromisoformat(made.reason["due"]) == madrid("2026-03-09T15:05")
        assert made.reason["timezone"] == MADRID
        await run.step(at="2026-03-09T14:35:00+01:00")
        assert [d.agent for d in run.actions("promise_reminder")] == ["ana"]
        await run.step(at="2026-03-09T15:05:00+01:00")
        [update] = [
            e for e in run.out("outbound.site-chat") if e.meta.get("purpose") == "promise_update"
        ]
        assert update.meta["template"] == "promise_broken" and update.meta["language"] == "es"
        assert "te prometimos «revisar el envío» para hoy a las 15:05" in update.text
