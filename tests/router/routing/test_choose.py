"""The choice of agent and the board it walks, checked against a plain scan of every agent."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from router.routing.board import AgentBoard, order_key, tie_break
from router.routing.choose import MAX_EXPLAINED, AgentView, Need, can_take, choose_agent
from tests.router.routing.scenarios import Run, mail

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TYPES = ("email", "webchat", "telegram")
SKILLS = ("billing", "tech", "complaints")


def view(agent_id: str, **kw: object) -> AgentView:
    base: dict[str, object] = {
        "id": agent_id,
        "skills": {"billing": 1},
        "languages": frozenset({"en"}),
        "channels": frozenset(),
        "capacity": {"email": 2, "webchat": 1},
        "load": {},
        "status": "available",
        "on_shift": True,
    }
    base.update(kw)
    return AgentView(**base)  # type: ignore[arg-type]


@st.composite
def agent_views(draw: st.DrawFn, agent_id: str) -> AgentView:
    capacity = {t: draw(st.integers(0, 3)) for t in TYPES}
    return view(
        agent_id,
        skills={s: draw(st.integers(0, 3)) for s in SKILLS},
        languages=frozenset(draw(st.sets(st.sampled_from(["en", "es"]), min_size=1))),
        channels=frozenset(draw(st.sets(st.sampled_from(["mail", "chat", "tg"]), max_size=2))),
        capacity=capacity,
        load={t: draw(st.integers(0, c)) for t, c in capacity.items()},
        status=draw(st.sampled_from(["available", "available", "away", "offline"])),
        on_shift=draw(st.booleans()),
        last_assigned_at=draw(st.none() | st.integers(0, 600).map(lambda m: T0 + timedelta(m))),
    )


needs = st.builds(
    Need,
    channel=st.sampled_from(["mail", "chat", "tg"]),
    channel_type=st.sampled_from(TYPES),
    skills=st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 3), max_size=2),
    language=st.none() | st.sampled_from(["en", "es"]),
)

# One change the routing code makes to the board: load +-1, a status, a shift flag.
changes = st.tuples(
    st.integers(0, 11),
    st.sampled_from(["load+", "load-", "available", "away", "shift"]),
    st.sampled_from(TYPES),
)


def scan(views: list[AgentView], need: Need, exclude: set[str]) -> str | None:
    """The rule, read plainly: of every agent who can take it, the least occupied, idlest."""
    fits = [v for v in views if v.id not in exclude and can_take(v, need)]
    return min(fits, key=order_key).id if fits else None


def apply(board: AgentBoard, views: dict[str, AgentView], change: tuple[int, str, str]) -> None:
    """Make the same change on the board and on the plain list of views."""
    n, what, channel_type = change
    agent_id = f"a{n % len(views)}"
    if what in ("load+", "load-"):
        at = T0 + timedelta(hours=1, minutes=n) if what == "load+" else None
        board.add_load(agent_id, channel_type, 1 if what == "load+" else -1, at=at)
        v = views[agent_id]
        load = dict(v.load)
        load[channel_type] = max(0, load.get(channel_type, 0) + (1 if what == "load+" else -1))
        views[agent_id] = dataclasses.replace(
            v, load=load, last_assigned_at=at if at is not None else v.last_assigned_at
        )
    elif what == "shift":
        flip = not views[agent_id].on_shift
        board.put(dataclasses.replace(views[agent_id], on_shift=flip))
        views[agent_id] = dataclasses.replace(views[agent_id], on_shift=flip)
    else:
        board.set_status(agent_id, what)
        views[agent_id] = dataclasses.replace(views[agent_id], status=what)


@given(
    st.integers(1, 12).flatmap(lambda n: st.tuples(*(agent_views(f"a{i}") for i in range(n)))),
    st.lists(changes, max_size=25),
    st.lists(needs, min_size=1, max_size=5),
    st.sets(st.sampled_from([f"a{i}" for i in range(12)]), max_size=2),
)
def test_the_board_picks_whom_a_scan_of_every_agent_picks(
    agents: tuple[AgentView, ...],
    history: list[tuple[int, str, str]],
    asked: list[Need],
    exclude: set[str],
) -> None:
    board = AgentBoard(agents)
    views = {v.id: v for v in agents}
    for change in history:
        apply(board, views, change)
    for need in asked:
        choice = choose_agent(board, need, exclude=exclude)
        assert choice.agent_id == scan(list(views.values()), need, exclude)
        if choice.agent_id is None:
            assert choice.rule == "queued"
        else:
            assert choice.rule == "best_available"
    # Kept in step change by change, the board walks as one built afresh does.
    fresh = AgentBoard(views.values())
    for t in TYPES:
        assert [v.id for v in board.walk(t)] == [v.id for v in fresh.walk(t)]
        assert list(board.walk(t)) == list(fresh.walk(t))


def test_the_walk_stops_at_the_first_agent_who_fits() -> None:
    board = AgentBoard(
        [
            view("idle", last_assigned_at=None),
            view("busy", load={"email": 1}),
            view("recent", last_assigned_at=T0),
        ]
    )
    choice = choose_agent(board, Need(channel="mail", channel_type="email"))
    assert choice.agent_id == "idle"
    assert choice.reason["examined"] == 1
    assert [v.id for v in board.walk("email")] == ["idle", "recent", "busy"]


def test_away_off_shift_and_capacityless_agents_are_not_walked() -> None:
    board = AgentBoard(
        [
            view("away", status="away"),
            view("off", on_shift=False),
            view("no-chat", capacity={"email": 2}),
            view("here"),
        ]
    )
    assert [v.id for v in board.walk("webchat")] == ["here"]
    assert sorted(v.id for v in board.walk("email")) == ["here", "no-chat"]  # a tie
    assert board.present("webchat") == 1


def test_qualification_is_checked_on_the_walk() -> None:
    board = AgentBoard(
        [
            view("idle-no-skill", skills={}, last_assigned_at=None),
            view("es-only", languages=frozenset({"es"}), last_assigned_at=T0),
            view("other-channel", channels=frozenset({"tg"}), last_assigned_at=T0),
            view("qualified", skills={"complaints": 2}, last_assigned_at=T0 + timedelta(1)),
        ]
    )
    need = Need(channel="mail", channel_type="email", skills={"complaints": 1}, language="en")
    choice = choose_agent(board, need)
    assert choice.agent_id == "qualified"
    assert choice.reason["skipped"] == {
        "idle-no-skill": "needs complaints>=1, has 0",
        "es-only": "needs complaints>=1, has 0",
        "other-channel": "needs complaints>=1, has 0",
    }


def test_nobody_free_queues_with_the_reason() -> None:
    board = AgentBoard([view("full", load={"webchat": 1}), view("away", status="away")])
    choice = choose_agent(board, Need(channel="chat", channel_type="webchat"))
    assert choice.agent_id is None and choice.rule == "queued"
    assert choice.reason["skipped"] == {
        "full": "at capacity on webchat (1)",
        "away": "status away",
    }
    assert choice.reason["present"] == 1


def test_a_busy_agent_who_does_not_qualify_is_named_for_what_they_lack() -> None:
    """docs/routing.md: the qualified agents who could not take it first, then the
    unqualified ones with why; a full agent without the language is not a qualified one."""
    board = AgentBoard(
        [
            view("full-en", load={"webchat": 1}, last_assigned_at=None),
            view("full-es", languages=frozenset({"es"}), load={"webchat": 1}, last_assigned_at=T0),
        ]
    )
    choice = choose_agent(board, Need(channel="chat", channel_type="webchat", language="es"))
    assert choice.agent_id is None
    assert list(choice.reason["skipped"].items()) == [
        ("full-es", "at capacity on webchat (1)"),
        ("full-en", "does not speak es"),
    ]


def test_the_last_agent_comes_first_and_is_waited_for_while_busy() -> None:
    board = AgentBoard([view("idle", last_assigned_at=None), view("known", last_assigned_at=T0)])
    need = Need(channel="mail", channel_type="email")
    assert choose_agent(board, need, last_agent_id="known").rule == "last_agent"
    board.add_load("known", "email", 2)
    waiting = choose_agent(board, need, last_agent_id="known", wait_for_last_agent=True)
    assert (waiting.agent_id, waiting.rule) == (None, "waiting_for_last_agent")
    widened = choose_agent(board, need, last_agent_id="known", wait_for_last_agent=False)
    assert widened.agent_id == "idle"


def test_agents_who_let_it_time_out_are_passed_over_and_named() -> None:
    board = AgentBoard([view("slow", last_assigned_at=None), view("next", last_assigned_at=T0)])
    need = Need(channel="mail", channel_type="email")
    choice = choose_agent(board, need, last_agent_id="slow", exclude={"slow"})
    assert choice.agent_id == "next"
    assert choice.reason["skipped"] == {"slow": "did not take it in time"}


def test_shifts_are_recomputed_once_a_minute() -> None:
    board = AgentBoard([view("a"), view("b")], shifts_at=T0)
    asked: list[str] = []

    def on_shift(agent_id: str) -> bool:
        asked.append(agent_id)
        return agent_id == "b"

    board.update_shifts(T0 + timedelta(seconds=30), on_shift)
    assert asked == [] and [v.id for v in board.walk("email")] == ["a", "b"]
    board.update_shifts(T0 + timedelta(minutes=1), on_shift)
    assert sorted(asked) == ["a", "b"]
    assert [v.id for v in board.walk("email")] == ["b"]
    board.update_shifts(T0 + timedelta(minutes=1, seconds=59), on_shift)
    assert len(asked) == 2


def test_nobody_on_shift_queues_naming_who_is_off_shift_away_or_full() -> None:
    board = AgentBoard(
        [
            view("night", on_shift=False),
            view("resting", status="away"),
            view("gone", status="offline", on_shift=False),
            view("no-skill", skills={}, on_shift=False),
            view("chat-only", capacity={"webchat": 1}, on_shift=False),
        ]
    )
    choice = choose_agent(board, Need(channel="mail", channel_type="email", skills={"billing": 1}))
    assert choice.rule == "queued" and choice.reason["present"] == 0
    assert choice.reason["skipped"] == {
        "night": "off shift",
        "resting": "status away",
        "gone": "status offline",
    }


def test_qualified_agents_not_present_are_named_before_unqualified_ones() -> None:
    novices = [view(f"novice{i}", skills={}) for i in range(MAX_EXPLAINED)]
    board = AgentBoard([*novices, view("away", status="away")])
    choice = choose_agent(board, Need(channel="mail", channel_type="email", skills={"billing": 1}))
    skipped = choice.reason["skipped"]
    assert len(skipped) == MAX_EXPLAINED
    assert next(iter(skipped.items())) == ("away", "status away")
    assert all(why == "needs billing>=1, has 0" for why in list(skipped.values())[1:])


def test_equally_idle_agents_are_not_taken_in_the_order_of_their_names() -> None:
    # Never assigned: a stable hash orders them, the same in every process.
    ids = ["ana", "ben", "cy"]
    board = AgentBoard([view(i) for i in ids])
    walked = [v.id for v in board.walk("email")]
    assert walked == sorted(ids, key=tie_break) == ["ana", "cy", "ben"]


def test_work_given_in_one_instant_goes_round_the_team() -> None:
    # Each conversation is taken and finished before the next comes, all at one time:
    # the least recently assigned takes the next, however the clock ties.
    board = AgentBoard([view(i) for i in ("a", "b", "c")])
    need = Need(channel="mail", channel_type="email")
    taken = []
    for _ in range(9):
        agent_id = choose_agent(board, need).agent_id
        assert agent_id is not None
        taken.append(agent_id)
        board.add_load(agent_id, "email", 1, at=board.assigned_at(T0))
        board.add_load(agent_id, "email", -1)
    assert taken[3:6] == taken[:3] and taken[6:] == taken[:3]
    assert sorted(taken[:3]) == ["a", "b", "c"]
    assert board.assigned_at(T0) > T0  # after the latest, which was itself after T0


async def test_a_teams_work_is_spread_when_agents_are_equally_idle(run: Run) -> None:
    # Ben then Ana take one each at the same instant; each finishes; the next goes
    # to whoever was assigned less recently, Ben, then Ana: not always to Ana.
    await run.step(agent="ana", command="away")
    await run.step(**mail("a@shop.test", "<a@x>", "refund"))
    await run.step(agent="ana", command="available")
    await run.step(**mail("b@shop.test", "<b@x>", "refund"))
    await run.step(agent="ben", command="resolve", conversation="mail/<a@x>")
    await run.step(agent="ana", command="resolve", conversation="mail/<b@x>")
    for i, thread in enumerate(("<c@x>", "<d@x>", "<e@x>", "<f@x>")):
        await run.step(**mail(f"{i}@shop.test", thread, "refund"))
        owner = run.actions("assign")[-1].agent
        await run.step(agent=owner, command="resolve", conversation=f"mail/{thread}")
    assert [d.agent for d in run.actions("assign")] == ["ben", "ana", "ben", "ana", "ben", "ana"]
