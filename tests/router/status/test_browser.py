"""The supervisor page in real headless Chromium (Debian's, driven by Playwright), from
the running daemon with a busy floor: the browser signs in with HTTP Basic, the page
reads at desktop and phone width with no sideways scrolling of the page itself, and
axe-core finds no serious or critical accessibility violation. Screenshots are saved
(docs/status.png is one of them).

Skipped, with the reason, only outside CI when Chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.connectors.webchat.test_browser import (
    ARGS,
    CHROMIUM,
    DESKTOP,
    PHONE,
    WAIT_MS,
    _missing,
    async_playwright,
    expect,
    no_serious_violations,
)
from tests.harness.common import eventually, in_ci
from tests.router.status.floor import PASSWORD, REFUSED, busy_floor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_missing is not None and not in_ci(), reason=_missing or ""),
]


async def breached(base: str) -> bool:
    """The urgent conversation has missed its 1 s target (an incident today)."""
    auth = {"Authorization": f"Bearer {PASSWORD}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/status.json", headers=auth) as resp,
    ):
        return bool((await resp.json())["floor"]["incidents_today"])


async def test_the_supervisor_page_in_chromium(tmp_path: Path) -> None:
    async with busy_floor(tmp_path) as floor, async_playwright() as p:
        await eventually(lambda: breached(floor.base), 20)
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            credentials = {"username": "supervisor", "password": PASSWORD}
            # Under the page's own policy its script runs (allowed by hash): the pause
            # button it shows works, and is kept for the tab across reloads.
            strict = await browser.new_context(viewport=DESKTOP, http_credentials=credentials)
            page = await strict.new_page()
            response = await page.goto(floor.base + "/status")
            assert response is not None and response.status == 200
            pause = page.get_by_role("button", name="Pause refreshing")
            await expect(pause).to_have_attribute("aria-pressed", "false")
            await pause.click()
            await expect(pause).to_have_attribute("aria-pressed", "true")
            await page.reload()
            await expect(pause).to_have_attribute("aria-pressed", "true")
            await strict.close()

            # axe is injected, which the page's policy would refuse.
            context = await browser.new_context(
                viewport=DESKTOP, http_credentials=credentials, bypass_csp=True
            )
            page = await context.new_page()
            response = await page.goto(floor.base + "/status")
            assert response is not None and response.status == 200
            await expect(page.get_by_role("heading", level=1)).to_have_text("Floor status")
            for name in ("Queues", "At risk", "Agents", "Channels", "Incidents today"):
                await expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
            main = page.get_by_role("main")
            await expect(main.get_by_role("table")).to_have_count(5)
            queues = page.get_by_role("table", name="Conversations waiting for an agent")
            await expect(queues.get_by_role("row", name="general")).to_contain_text("2")
            await expect(page.get_by_text(REFUSED)).to_be_visible()
            await expect(page.get_by_text("first-response target missed")).to_be_visible()
            await page.screenshot(path=str(tmp_path / "status.png"), full_page=True)
            await no_serious_violations(page)

            # A phone: the page fits its width; wide tables scroll in their own region.
            await page.set_viewport_size(PHONE)
            await page.reload()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"]
            await page.screenshot(path=str(tmp_path / "status-phone.png"), full_page=True)
            await no_serious_violations(page)
            await context.close()
        finally:
            await browser.close()
