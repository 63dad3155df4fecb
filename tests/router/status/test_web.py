"""`/status` and `/status.json` on the running daemon: the credential, and what they show."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp

from router.status.web import FAILURES_PER_MINUTE
from tests.harness.common import eventually
from tests.router.status.floor import PASSWORD, REFUSED, busy_floor


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_the_page_needs_the_supervisor_credential(tmp_path: Path) -> None:
    async with busy_floor(tmp_path) as floor:
        for path in ("/status", "/status.json"):
            status, headers, _ = await get(floor.base + path)
            assert status == 401
            assert headers["WWW-Authenticate"].startswith('Basic realm="omnirouter supervisor"')
            wrong = [
                basic("supervisor", "not the password"),
                basic("someone", PASSWORD),  # the right password, the wrong user
                {"Authorization": "Bearer not the password"},
                {"Authorization": "Basic %%%"},
                {"Authorization": "Digest whatever"},
            ]
            for creds in wrong:
                status, headers, _ = await get(floor.base + path, creds)
                assert status == 401, creds
            for creds in (basic("supervisor", PASSWORD), {"Authorization": f"Bearer {PASSWORD}"}):
                status, headers, _ = await get(floor.base + path, creds)
                assert status == 200, creds
                assert headers["Cache-Control"] == "no-store"


async def test_without_the_supervisor_block_the_page_is_off_and_says_how_to_turn_it_on(
    tmp_path: Path,
) -> None:
    async with busy_floor(tmp_path, supervisor=False) as floor:
        status, _, text = await get(floor.base + "/status", basic("supervisor", PASSWORD))
        assert status == 404
        assert "supervisor.password_hash" in text and "docs/status.md" in text


async def test_the_page_shows_the_floor(tmp_path: Path) -> None:
    async with busy_floor(tmp_path) as floor:
        auth = basic("supervisor", PASSWORD)

        async def breached() -> bool:
            _, _, text = await get(floor.base + "/status", auth)
            return "sla breach" in text

        await eventually(breached, 20)
        status, headers, html = await get(floor.base + "/status", auth)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert '<body data-refresh="30">' in html
        for seen in (
            "Ana Pérez",  # an agent, by name, with her load against capacity
            "memory 1/1",
            "off shift",  # Cy
            "away",  # Ben
            "sink channel old-hooks is disabled",  # Dee is unreachable, and why
            REFUSED,  # the broken channel is down, with the reason
            "overdue by",  # the urgent conversation missed its 1 s target
            "first-response target missed",  # and it is today's incident
            "none since the start",  # no reload yet
            "1 record(s) dead-lettered since the daemon started",
        ):
            assert seen in html, seen
        _, _, body = await get(floor.base + "/status.json", auth)
        import orjson

        data = orjson.loads(body)
        queues = {q["name"]: q["depth"] for q in data["floor"]["queues"]}
        assert queues == {"general": 2, "billing": 1}
        channels = {c["name"]: c["state"] for c in data["runtime"]["channels"]}
        assert channels == {
            "chat": "up",
            "broken": "down",
            "agent-hooks": "up",
            "old-hooks": "disabled",
        }


async def test_the_last_reload_and_its_result_are_shown(tmp_path: Path) -> None:
    async with busy_floor(tmp_path) as floor:
        auth = {"Authorization": f"Bearer {PASSWORD}"}
        text = floor.config.read_text(encoding="utf-8")
        floor.config.write_text(text.replace("queues:", "queues:\n  - name: nope!"), "utf-8")
        assert not await floor.daemon.reload()
        _, _, body = await get(floor.base + "/status.json", auth)
        import orjson

        reload = orjson.loads(body)["runtime"]["reload"]
        assert reload["result"] == "invalid"
        assert any("nope!" in line for line in reload["detail"])
        floor.config.write_text(text.replace("refresh_seconds: 30", "refresh_seconds: 60"), "utf-8")
        assert await floor.daemon.reload()
        _, _, html = await get(floor.base + "/status", auth)
        assert '<body data-refresh="60">' in html  # the new config is used
        assert '<span class="good">ok</span> at' in html


async def test_guessing_from_one_address_is_answered_429_without_a_check(tmp_path: Path) -> None:
    async with busy_floor(tmp_path) as floor:
        for _ in range(FAILURES_PER_MINUTE):
            status, _, _ = await get(floor.base + "/status", basic("supervisor", "guess"))
            assert status == 401
        # Now even the right password waits for the minute to pass: nothing is checked.
        status, headers, text = await get(floor.base + "/status", basic("supervisor", PASSWORD))
        assert status == 429 and "too many wrong credentials" in text
        assert 1 <= int(headers["Retry-After"]) <= 61
