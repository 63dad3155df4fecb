"""The supervisor page: one server-rendered HTML document from a `Status`.

No front-end build: one small inline script reloads the page every
`refresh_seconds` (the browser sends the credential again by itself), with a
button to pause it, which WCAG's "timing adjustable" asks for (a bare
`<meta http-equiv="refresh">` gives no way to stop it; axe-core calls it critical).
Without script the page is the same, only not refreshed. Built for a phone first
(one column, tables that scroll sideways inside their own region), with the
landmarks, captions and header cells a screen reader needs, and states written
in words, never by colour alone.
"""

from __future__ import annotations

import hashlib
from base64 import b64encode
from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from router.status.snapshot import AT_RISK_WITHIN, AgentLine, ChannelLine, Status

STYLE = """
:root{color-scheme:light;--ink:#1b1b1b;--muted:#4a4a4a;--line:#d0d0d0;--bad:#a3000b;
--good:#0b5d1e;--warn:#7a4b00;--bg:#fff;--band:#f3f3f3}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}
header,main,footer{max-width:72rem;margin:0 auto;padding:0 1rem}
header{padding-top:.75rem}
h1{font-size:1.35rem;margin:.25rem 0}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
p{margin:.35rem 0}
.muted{color:var(--muted)}
ul.summary{list-style:none;padding:0;margin:.75rem 0;display:flex;flex-wrap:wrap;gap:.5rem}
ul.summary li{background:var(--band);border:1px solid var(--line);border-radius:.4rem;
padding:.35rem .6rem}
ul.summary strong{font-size:1.15rem}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:.4rem}
.scroll:focus{outline:3px solid #1a5fb4;outline-offset:2px}
table{border-collapse:collapse;width:100%}
caption{text-align:left;padding:.4rem .6rem;color:var(--muted);caption-side:top}
th,td{padding:.4rem .6rem;text-align:left;vertical-align:top;border-top:1px solid var(--line)}
thead th{background:var(--band);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:var(--bad);font-weight:600}
.good{color:var(--good);font-weight:600}
.warn{color:var(--warn);font-weight:600}
footer{padding-bottom:1.5rem;margin-top:1.5rem}
button{font:inherit;padding:.35rem .7rem;border:1px solid #555;border-radius:.4rem;background:#fff;
color:var(--ink);cursor:pointer}
button[aria-pressed="true"]{background:#1b1b1b;color:#fff}
button:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
a{color:#0b4ea2}
"""
# Reloads every `data-refresh` seconds unless paused (the pause lasts for the tab's session).
SCRIPT = """
(function () {
  var key = "omnirouter-status-paused", button = document.getElementById("pause");
  var every = Number(document.body.getAttribute("data-refresh")) * 1000;
  function paused() { return sessionStorage.getItem(key) === "1"; }
  function show() { button.setAttribute("aria-pressed", paused() ? "true" : "false"); }
  button.hidden = false;
  show();
  button.addEventListener("click", function () {
    sessionStorage.setItem(key, paused() ? "0" : "1");
    show();
  });
  setInterval(function () { if (!paused()) { location.reload(); } }, every);
})();
"""


def _digest(text: str) -> str:
    return "sha256-" + b64encode(hashlib.sha256(text.encode()).digest()).decode()


# The page's only style and script, allowed by their hashes (no 'unsafe-inline').
CSP = (
    f"default-src 'none'; style-src '{_digest(STYLE)}'; script-src '{_digest(SCRIPT)}';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render(status: Status, *, refresh_seconds: int) -> str:
    floor = status.floor
    tz = ZoneInfo(floor.timezone)
    now = floor.taken_at
    waiting = sum(q.depth for q in floor.queues)
    down = sum(1 for c in status.runtime.channels if c.state == "down") if status.runtime else None
    summary = [
        (str(waiting), "waiting"),
        (str(floor.at_risk_count), "at risk"),
        (str(floor.incidents_today), "incidents today"),
        (str(_dead_letters(status)), "dead letters"),
        ("?" if down is None else str(down), "channels down"),
    ]
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="robots" content="noindex">',
        f"<title>Floor status · {escape(clock(now, tz))} · omnirouter</title>",
        f"<style>{STYLE}</style></head>",
        f'<body data-refresh="{int(refresh_seconds)}">',
        "<header><h1>Floor status</h1>",
        f'<p class="muted">At {_time(now, now, tz)} ({escape(floor.timezone)});'
        f" refreshes every {int(refresh_seconds)} s."
        ' <button type="button" id="pause" aria-pressed="false" hidden>Pause refreshing'
        "</button></p></header>",
        "<main>",
        '<ul class="summary" aria-label="Summary">',
        *(f"<li><strong>{escape(n)}</strong> {escape(label)}</li>" for n, label in summary),
        "</ul>",
        _queues(status, tz),
        _at_risk(status, tz),
        _agents(status, tz),
        _channels(status, tz),
        _incidents(status, tz),
        _resolutions(status),
        _praise(status),
        _operations(status, tz),
        "</main>",
        '<footer><p class="muted">omnirouter · the same data as JSON:'
        ' <a href="/status.json">/status.json</a></p></footer>',
        f"<script>{SCRIPT}</script>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _dead_letters(status: Status) -> int:
    since_start = status.runtime.dead_letters if status.runtime is not None else 0
    return status.floor.dead_outputs + since_start


def _section(ident: str, title: str, body: str) -> str:
    return (
        f'<section aria-labelledby="{ident}"><h2 id="{ident}">{escape(title)}</h2>{body}</section>'
    )


def _table(ident: str, caption: str, head: list[str], rows: list[list[str]]) -> str:
    """A table in a region that scrolls sideways on a narrow screen (focusable, so a
    keyboard can scroll it). The first cell of each row is its header; cells are HTML."""
    cols = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join(
        "<tr>"
        + f'<th scope="row">{row[0]}</th>'
        + "".join(f"<td{_cls(c)}>{_strip(c)}</td>" for c in row[1:])
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll" role="region" aria-labelledby="{ident}-c" tabindex="0">'
        f'<table><caption id="{ident}-c">{escape(caption)}</caption>'
        f"<thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table></div>"
    )


_NUM = "\x00num"  # a cell marker: right-aligned figures


def _cls(cell: str) -> str:
    return ' class="num"' if cell.startswith(_NUM) else ""


def _strip(cell: str) -> str:
    return cell.removeprefix(_NUM)


def _queues(status: Status, tz: ZoneInfo) -> str:
    now = status.floor.taken_at
    rows = [
        [
            escape(q.name) if q.name is not None else "<i>no queue</i>",
            _NUM + str(q.depth),
            _since(q.oldest_since, now, tz) if q.oldest_since else "—",
        ]
        for q in status.floor.queues
    ]
    if not rows:
        return _section("queues", "Queues", "<p>No queues are configured.</p>")
    table = _table(
        "queues", "Conversations waiting for an agent", ["Queue", "Waiting", "Oldest wait"], rows
    )
    return _section("queues", "Queues", table)


def _at_risk(status: Status, tz: ZoneInfo) -> str:
    floor = status.floor
    now = floor.taken_at
    window = int(AT_RISK_WITHIN.total_seconds() // 60)
    if not floor.at_risk:
        body = (
            "<p>None: no unanswered conversation is past its SLA warning"
            f" or due within {window} min.</p>"
        )
        return _section("risk", "At risk", body)
    rows = []
    for r in floor.at_risk:
        left = r.due_at - now
        when = f'<time datetime="{r.due_at.isoformat()}">{escape(clock(r.due_at, tz))}</time>'
        if left.total_seconds() < 0:
            label = f'<span class="bad">overdue by {span(-left)}</span> ({when})'
        else:
            label = f'<span class="warn">{span(left)} left</span> ({when})'
        rows.append(
            [
                escape(f"#{r.ref}" if r.ref else r.conversation_id[:8]),
                escape(r.channel),
                escape(r.queue or "—"),
                escape(r.owner or "unassigned"),
                escape(r.priority),
                label,
            ]
        )
    shown = len(floor.at_risk)
    caption = (
        f"{floor.at_risk_count} unanswered past the SLA warning or due within {window} min,"
        " least time left first" + (f" (the first {shown})" if shown < floor.at_risk_count else "")
    )
    table = _table(
        "risk", caption, ["Conversation", "Channel", "Queue", "Agent", "Priority", "Target"], rows
    )
    return _section("risk", "At risk", table)


def _agents(status: Status, tz: ZoneInfo) -> str:
    now = status.floor.taken_at
    rows = [
        [
            escape(a.name)
            + (" <span class='muted'>(supervisor)</span>" if a.supervisor else "")
            + f'<br><span class="muted">{escape(a.id)}</span>',
            _status(a, now, tz),
            _shift(a, now, tz),
            "<br>".join(f"{escape(x.channel_type)} {x.open}/{x.capacity}" for x in a.load) or "—",
            '<span class="good">yes</span>'
            if a.unreachable is None
            else f'<span class="bad">no</span>: {escape(a.unreachable)}',
        ]
        for a in status.floor.agents
    ]
    if not rows:
        return _section("agents", "Agents", "<p>No agents are configured.</p>")
    table = _table(
        "agents",
        "Open conversations per channel type against capacity",
        ["Agent", "Status", "Shift", "Load", "Reachable"],
        rows,
    )
    return _section("agents", "Agents", table)


def _status(a: AgentLine, now: datetime, tz: ZoneInfo) -> str:
    cls = "good" if a.status == "available" else "muted"
    text = f'<span class="{cls}">{escape(a.status)}</span>'
    if a.status_since is not None:
        text += f'<br><span class="muted">for {span(now - a.status_since)}</span>'
    return text


def _shift(a: AgentLine, now: datetime, tz: ZoneInfo) -> str:
    if a.schedule is None:
        return "on shift <span class='muted'>(no schedule)</span>"
    state = "on shift" if a.on_shift else "off shift"
    text = f"{state} <span class='muted'>({escape(a.schedule)})</span>"
    if a.shift_changes_at is not None:
        verb = "until" if a.on_shift else "from"
        text += f"<br>{verb} {_time(a.shift_changes_at, now, tz)}"
    return text


def _channels(status: Status, tz: ZoneInfo) -> str:
    runtime = status.runtime
    if runtime is None:
        note = status.runtime_note or "the daemon's part is not available"
        return _section("channels", "Channels", f"<p>Unknown: {escape(note)}.</p>")
    now = status.floor.taken_at
    rows = [[escape(c.name), escape(c.type), *_health(c, now, tz)] for c in runtime.channels]
    if not rows:
        return _section("channels", "Channels", "<p>No channels are configured.</p>")
    table = _table(
        "channels", "Health of each channel's connector", ["Channel", "Type", "State", "Why"], rows
    )
    return _section("channels", "Channels", table)


def _health(c: ChannelLine, now: datetime, tz: ZoneInfo) -> list[str]:
    if c.state == "down":
        why = escape(c.reason or "")
        if c.since is not None:
            why += f"<br><span class='muted'>since {_time(c.since, now, tz)}"
            if c.next_attempt is not None:
                why += f"; next attempt {_time(c.next_attempt, now, tz)}"
            why += "</span>"
        return ['<span class="bad">down</span>', why]
    cls = {"up": "good", "connecting": "warn", "stopped": "warn"}.get(c.state, "muted")
    return [f'<span class="{cls}">{escape(c.state)}</span>', escape(c.reason or "")]


def _incidents(status: Status, tz: ZoneInfo) -> str:
    floor = status.floor
    now = floor.taken_at
    if not floor.incidents:
        return _section("incidents", "Incidents today", "<p>None today.</p>")
    rows = [
        [
            _time(i.created_at, now, tz),
            escape(i.kind.replace("_", " ")),
            escape(f"#{i.ref}" if i.ref else (i.conversation_id or "—")[:12]),
            escape(i.channel or "—"),
            escape(i.cause),
        ]
        for i in floor.incidents
    ]
    shown = len(floor.incidents)
    caption = f"{floor.incidents_today} since midnight, newest first" + (
        f" (the newest {shown})" if shown < floor.incidents_today else ""
    )
    table = _table("incidents", caption, ["When", "Kind", "Conversation", "Channel", "Cause"], rows)
    return _section("incidents", "Incidents today", table)


def _resolutions(status: Status) -> str:
    lines = status.floor.resolutions
    title = "First-contact resolution today"
    if not lines:
        return _section("resolutions", title, "<p>Nothing resolved today.</p>")
    rows = [
        [
            escape(r.by),
            escape(r.name),
            str(r.resolved),
            str(r.first_contact),
            "—" if r.share is None else f"{r.share:.0%}",
        ]
        for r in lines
    ]
    caption = "Resolved by their first agent, with no transfer and no reopening"
    table = _table(
        "resolutions", caption, ["By", "Name", "Resolved", "First contact", "Share"], rows
    )
    return _section("resolutions", title, table)


def _praise(status: Status) -> str:
    lines = status.floor.praise_week
    title = "Praise this week"
    if not lines:
        return _section("praise", title, "<p>None in the last 7 days.</p>")
    rows = [[escape(agent), str(count)] for agent, count in lines]
    caption = "Good follow-up answers and messages of praise relayed to each agent, last 7 days"
    return _section("praise", title, _table("praise", caption, ["Agent", "Praise"], rows))


def _operations(status: Status, tz: ZoneInfo) -> str:
    floor = status.floor
    now = floor.taken_at
    items = [
        f"<dt>Dead letters</dt><dd>{floor.dead_outputs} output(s) that could never be"
        " published, kept in the store"
        + (
            f"; {status.runtime.dead_letters} record(s) dead-lettered since the daemon started"
            if status.runtime is not None
            else ""
        )
        + "</dd>"
    ]
    runtime = status.runtime
    if runtime is None:
        items.append(f"<dt>Daemon</dt><dd>{escape(status.runtime_note or 'unknown')}</dd>")
    else:
        items.append(f"<dt>Daemon started</dt><dd>{_time(runtime.started_at, now, tz)}</dd>")
        reload = runtime.reload
        if reload is None:
            text = "none since the start"
        else:
            cls = "good" if reload.result == "ok" else "bad"
            text = (
                f'<span class="{cls}">{escape(reload.result)}</span> at {_time(reload.at, now, tz)}'
            )
            if reload.detail:
                text += "<ul>" + "".join(f"<li>{escape(d)}</li>" for d in reload.detail) + "</ul>"
        items.append(f"<dt>Last config reload</dt><dd>{text}</dd>")
    return _section("operations", "Operations", f"<dl>{''.join(items)}</dl>")


# --- times --------------------------------------------------------------------------------


def span(delta: timedelta) -> str:
    """A duration for people: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%H:%M")


def _time(at: datetime, now: datetime, tz: ZoneInfo) -> str:
    """`<time>` with the moment in the page's zone: the clock today, else with the day."""
    local, today = at.astimezone(tz), now.astimezone(tz)
    shown = local.strftime("%H:%M" if local.date() == today.date() else "%a %d %b %H:%M")
    return f'<time datetime="{at.isoformat()}">{escape(shown)}</time>'


def _since(at: datetime, now: datetime, tz: ZoneInfo) -> str:
    return f"{span(now - at)} <span class='muted'>(since {_time(at, now, tz)})</span>"
