"""Cross-references between sections: every name used must be defined, once.

Checked once the sections themselves are valid. When some sections are not,
the loader still runs these checks on what did validate, with the names
defined anywhere in the raw file, so one mistake does not hide the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router.config.model import Config
from router.connector import ConnectorSpec
from router.http import RESERVED
from router.routing.identity import EMAIL

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class Names:
    """Names defined in a config, per kind."""

    skills: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    channels: dict[str, str] = field(default_factory=dict)  # name -> type
    business_hours: set[str] = field(default_factory=set)
    templates: set[str] = field(default_factory=set)

    def merge(self, other: Names) -> Names:
        return Names(
            skills=self.skills | other.skills,
            queues=self.queues | other.queues,
            channels={**other.channels, **self.channels},
            business_hours=self.business_hours | other.business_hours,
            templates=self.templates | other.templates,
        )


def names_of(config: Config) -> Names:
    return Names(
        skills={s.name for s in config.skills},
        queues={q.name for q in config.queues},
        channels={c.name: c.type for c in config.channels},
        business_hours=set(config.business_hours),
        templates=set(config.templates),
    )


def names_in_data(data: Any) -> Names:
    """Names defined in raw, possibly invalid, data (best effort)."""
    if not isinstance(data, Mapping):
        return Names()

    def listed(section: str, key: str) -> Iterable[Mapping[str, Any]]:
        items = data.get(section)
        if isinstance(items, list):
            yield from (i for i in items if isinstance(i, Mapping) and isinstance(i.get(key), str))

    def keys(section: str) -> set[str]:
        value = data.get(section)
        return {str(k) for k in value} if isinstance(value, Mapping) else set()

    return Names(
        skills={i["name"] for i in listed("skills", "name")},
        queues={i["name"] for i in listed("queues", "name")},
        channels={i["name"]: str(i.get("type")) for i in listed("channels", "name")},
        business_hours=keys("business_hours"),
        templates=keys("templates"),
    )


_PLURAL = {
    "skill": "skills",
    "queue": "queues",
    "channel": "channels",
    "business hours": "business_hours",
    "template": "templates",
    "channel type": "channel types",
}


def reference_problems(
    config: Config,
    registry: Mapping[str, ConnectorSpec],
    extra: Names | None = None,
) -> list[tuple[Loc, str]]:
    """Every undefined, duplicate or inconsistent reference, as (location, message)."""
    names = names_of(config)
    if extra is not None:
        names = names.merge(extra)
    types = set(registry)
    problems: list[tuple[Loc, str]] = []

    def need(loc: Loc, kind: str, value: str | None, defined: Iterable[str]) -> None:
        if value is None:
            return
        known = sorted(set(defined))
        if value in known:
            return
        hint = f"; defined: {', '.join(known)}" if known else f"; there are no {_PLURAL[kind]}"
        problems.append((loc, f"{kind} {value!r} is not defined{hint}"))

    def unique(section: str, key: str, values: list[str]) -> None:
        first: dict[str, int] = {}
        for i, value in enumerate(values):
            if value in first:
                problems.append(
                    (
                        (section, i, key),
                        f"duplicate {key} {value!r} (also {section}[{first[value]}])",
                    )
                )
            else:
                first[value] = i

    unique("channels", "name", [c.name for c in config.channels])
    unique("skills", "name", [s.name for s in config.skills])
    unique("queues", "name", [q.name for q in config.queues])
    unique("agents", "id", [a.id for a in config.agents])
    first_rule: dict[str, int] = {}
    for i, rule in enumerate(config.routing.rules):
        if rule.name in first_rule:
            problems.append(
                (
                    ("routing", "rules", i, "name"),
                    f"duplicate name {rule.name!r} (also routing.rules[{first_rule[rule.name]}])",
                )
            )
        first_rule.setdefault(rule.name, i)

    for i, channel in enumerate(config.channels):
        need(
            ("channels", i, "business_hours"),
            "business hours",
            channel.business_hours,
            names.business_hours,
        )
        need(("channels", i, "acknowledge"), "template", channel.acknowledge, names.templates)
        need(
            ("channels", i, "update_template"), "template", channel.update_template, names.templates
        )
        problems.extend(_answer_channel(config, registry, i))
    problems.extend(_route_clashes(config, registry))

    for i, queue in enumerate(config.queues):
        for skill in queue.skills:
            need(("queues", i, "skills", skill), "skill", skill, names.skills)
        need(("queues", i, "overflow"), "queue", queue.overflow, names.queues)
        if queue.overflow == queue.name:
            problems.append((("queues", i, "overflow"), "a queue cannot overflow into itself"))
    problems.extend(_overflow_cycles(config))

    for i, agent in enumerate(config.agents):
        for skill in agent.skills:
            need(("agents", i, "skills", skill), "skill", skill, names.skills)
        for j, channel_name in enumerate(agent.channels):
            need(("agents", i, "channels", j), "channel", channel_name, names.channels)
        for channel_type in agent.capacity:
            need(("agents", i, "capacity", channel_type), "channel type", channel_type, types)
        need(("agents", i, "schedule"), "business hours", agent.schedule, names.business_hours)
        sink = agent.sink
        if sink.channel is not None:
            need(("agents", i, "sink", "channel"), "channel", sink.channel, names.channels)
            actual = names.channels.get(sink.channel)
            if actual is not None and actual != sink.type:
                problems.append(
                    (
                        ("agents", i, "sink", "channel"),
                        f"channel {sink.channel!r} is a {actual} channel, not {sink.type}",
                    )
                )

    routing = config.routing
    need(("routing", "default_queue"), "queue", routing.default_queue, names.queues)
    for channel_type in routing.default_capacity:
        need(("routing", "default_capacity", channel_type), "channel type", channel_type, types)
    for i, rule in enumerate(routing.rules):
        loc: Loc = ("routing", "rules", i)
        for j, channel_name in enumerate(rule.match.channel):
            need((*loc, "match", "channel", j), "channel", channel_name, names.channels)
        for j, channel_type in enumerate(rule.match.channel_type):
            need((*loc, "match", "channel_type", j), "channel type", channel_type, types)
        for skill in rule.then.skills:
            need((*loc, "then", "skills", skill), "skill", skill, names.skills)
        need((*loc, "then", "queue"), "queue", rule.then.queue, names.queues)
        for key in ("during", "outside"):
            hours = getattr(rule.match, key)
            need((*loc, "match", key), "business hours", hours, names.business_hours)
    sla_senior = config.sla.senior_skill
    need(("sla", "senior_skill"), "skill", sla_senior, names.skills)
    complaints = routing.complaints
    if complaints.keywords:  # detection is off without keywords
        need(("routing", "complaints", "skill"), "skill", complaints.skill, names.skills)
    if (
        complaints.keywords
        and config.agents
        and not any(
            a.skills.get(routing.complaints.skill, 0) >= routing.complaints.min_level
            for a in config.agents
        )
    ):
        problems.append(
            (
                ("routing", "complaints", "skill"),
                f"no agent has skill {routing.complaints.skill!r} at level"
                f" {routing.complaints.min_level} or more; complaints would wait forever",
            )
        )

    sla = config.sla
    need(("sla", "business_hours"), "business hours", sla.business_hours, names.business_hours)
    for channel_type in sla.first_response:
        need(("sla", "first_response", channel_type), "channel type", channel_type, types)
    need(("sla", "warning_template"), "template", sla.warning_template, names.templates)
    need(("sla", "follow_up_template"), "template", sla.follow_up_template, names.templates)
    broken = routing.promises.broken_template
    need(("routing", "promises", "broken_template"), "template", broken, names.templates)

    language = routing.default_language
    for name, texts in config.templates.items():
        if language not in texts:
            problems.append(
                (
                    ("templates", name),
                    f"no text in the default language {language!r} (routing.default_language)",
                )
            )
    return problems


def _answer_channel(
    config: Config, registry: Mapping[str, ConnectorSpec], i: int
) -> list[tuple[Loc, str]]:
    """The channel a channel answers customers on at the email they gave (a web chat's
    `answer_by_email`): an enabled channel whose type writes first to an email address."""
    channel = config.channels[i]
    spec = registry.get(channel.type)
    if spec is None or spec.answer_channel is None or channel.settings is None:
        return []
    name = spec.answer_channel(channel.settings)
    if name is None:
        return []
    loc: Loc = ("channels", i, channel.type, "answer_by_email")
    target = next((c for c in config.channels if c.name == name), None)
    if target is None:
        known = sorted(c.name for c in config.channels)
        return [(loc, f"channel {name!r} is not defined; defined: {', '.join(known)}")]
    kind = registry.get(target.type)
    if kind is None or kind.start_thread is None or kind.sender_kind != EMAIL:
        return [
            (loc, f"channel {name!r} is a {target.type} channel, which cannot write to an email")
        ]
    if not target.enabled:
        return [(loc, f"channel {name!r} is disabled: nothing would send the answers")]
    return []


def _route_clashes(config: Config, registry: Mapping[str, ConnectorSpec]) -> list[tuple[Loc, str]]:
    """Routes the daemon could not add at start: one two enabled channels add (each
    declares its routes through its spec), or one of the daemon's own paths. A later
    channel is reported once per earlier channel it clashes with."""
    taken: dict[tuple[str, str], tuple[int, Loc]] = {}  # (method, path) -> first channel
    problems: list[tuple[Loc, str]] = []
    reported: set[tuple[Loc, int]] = set()
    for i, channel in enumerate(config.channels):
        spec = registry.get(channel.type)
        if not channel.enabled or spec is None or spec.http_routes is None:
            continue
        if channel.settings is None:
            continue
        for route in spec.http_routes(channel.settings, channel.name):
            loc: Loc = ("channels", i, channel.type, *route.key)
            if route.path in RESERVED:
                if (loc, -1) not in reported:
                    reported.add((loc, -1))
                    problems.append((loc, f"{route.path} is the daemon's own path"))
                continue
            first = taken.setdefault((route.method.upper(), route.path), (i, loc))
            j, first_loc = first
            if first_loc == loc or (loc, j) in reported:
                continue
            reported.add((loc, j))
            where = config.channels[j].name
            by = (
                f"channels[{i}].{_dotted(first_loc[2:])}"
                if j == i
                else f"channel {where!r} (channels[{j}])"
            )
            problems.append((loc, f"{route.path} is already served by {by}"))
    return problems


def _dotted(keys: Loc) -> str:
    return ".".join(str(k) for k in keys)


def _overflow_cycles(config: Config) -> list[tuple[Loc, str]]:
    overflow = {q.name: q.overflow for q in config.queues}
    index = {q.name: i for i, q in enumerate(config.queues)}
    reported: set[str] = set()
    problems: list[tuple[Loc, str]] = []
    for start in overflow:
        chain = [start]
        current = overflow[start]
        while current is not None and current in overflow and current not in chain:
            chain.append(current)
            current = overflow[current]
        if current == start and len(chain) > 1 and not reported & set(chain):
            reported.update(chain)
            problems.append(
                (
                    ("queues", index[start], "overflow"),
                    "overflow loops: " + " -> ".join([*chain, start]),
                )
            )
    return problems
