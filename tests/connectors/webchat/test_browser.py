"""The widget in real headless Chromium (Debian's, driven by Playwright), embedded in a
shop's page from the running daemon: acknowledgement, an agent's reply through the router,
a server-side cut while three replies are sent, reload and a second tab, phone width, the
queue position in the acknowledgement and as it changes, and axe-core's accessibility check.

Skipped, with the reason, only outside CI when Chromium or Playwright is missing: in CI
.ci/system-deps installs Chromium and the test extras Playwright, so it must run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.connectors.webchat.daemon import site
from tests.harness.common import eventually, free_port, in_ci

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.14.1 (MPL-2.0), from npm
WAIT_MS = 20_000

try:
    from playwright.async_api import Page, ViewportSize, WebSocketRoute, async_playwright, expect
except ImportError:  # pragma: no cover - the test extras install it
    async_playwright = None  # type: ignore[assignment]

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

_missing = (
    "Playwright is not installed (pip install -e '.[test]')"
    if async_playwright is None
    else f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None
    else None
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_missing is not None and not in_ci(), reason=_missing or ""),
]

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme shop</title></head>
<body><main><h1>Acme shop</h1><p>Hand-made teapots.</p></main>
<script src="{chat}/widget.js" async></script>
</body></html>"""


@asynccontextmanager
async def shop_page(chat_url: str, port: int) -> AsyncIterator[str]:
    """The shop's page on 127.0.0.1, embedding the widget with one tag."""

    async def page(request: web.Request) -> web.Response:
        lang = request.match_info.get("lang") or "en"
        return web.Response(text=PAGE.format(chat=chat_url, lang=lang), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/{lang:es}", page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def open_chat(page: Page) -> None:
    await page.get_by_role("button", name="Chat with us").click()
    await expect(page.get_by_role("dialog")).to_be_visible()


def texts(page: Page) -> Any:
    return page.locator(".omnichat-msg p")


async def no_serious_violations(page: Page) -> None:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == []


async def test_the_widget_end_to_end_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with (
        site(tmp_path, origin) as s,
        shop_page(s.chat_url, port) as url,
        async_playwright() as p,
    ):
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(viewport=DESKTOP)
            page = await context.new_page()
            await page.goto(url)

            # Keyboard only: the launcher opens the chat, focus lands in the message box.
            await page.get_by_role("button", name="Chat with us").focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("textbox", name="Your message")).to_be_focused()
            await page.keyboard.type("Where is my order?")
            await page.keyboard.press("Enter")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            await expect(page.locator(".omnichat-system p")).to_contain_text("we will answer")
            await expect(page.get_by_role("heading", name="Acme Support")).to_be_visible()

            await s.agent_says("Hi, Chloé here: it ships today.")
            await expect(page.locator(".omnichat-agent p")).to_have_text(
                ["Hi, Chloé here: it ships today."]
            )

            # The server cuts the socket while three replies are sent: each shows once, in order.
            assert s.cut_sockets() == 1
            for n in (1, 2, 3):
                await s.agent_says(f"Reply {n}")
            ack = await page.locator(".omnichat-system p").inner_text()
            history = [
                "Where is my order?",
                ack,
                "Hi, Chloé here: it ships today.",
                "Reply 1",
                "Reply 2",
                "Reply 3",
            ]
            await expect(texts(page)).to_have_text(history)
            await page.screenshot(path=str(tmp_path / "webchat-desktop.png"))
            await no_serious_violations(page)

            # A reload, and a second tab: the whole history, once each.
            await page.reload()
            await open_chat(page)
            await expect(texts(page)).to_have_text(history)
            second = await context.new_page()
            await second.goto(url)
            await open_chat(second)
            await expect(texts(second)).to_have_text(history)

            # Escape closes the chat and gives focus back to the launcher.
            await page.keyboard.press("Escape")
            await expect(page.get_by_role("button", name="Chat with us")).to_be_focused()

            # The page's language picks the widget's strings.
            spanish = await context.new_page()
            await spanish.goto(url + "es")
            await spanish.get_by_role("button", name="Chatea con nosotros").click()
            await expect(spanish.get_by_role("textbox", name="Tu mensaje")).to_be_focused()

            # Phone width: the panel fills the screen and stays usable.
            phone = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            small = await phone.new_page()
            await small.goto(url)
            await open_chat(small)
            await small.get_by_role("textbox", name="Your message").fill("Hola")
            await small.get_by_role("button", name="Send").click()
            await expect(small.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            box = await small.get_by_role("dialog").bounding_box()
            assert box is not None and box["width"] >= PHONE["width"] - 20
            await small.screenshot(path=str(tmp_path / "webchat-phone.png"))
            await no_serious_violations(small)

            # No socket can open (a proxy refuses the upgrade): the widget falls back to
            # POST and long-poll, and works the same.
            blocked = await browser.new_context(viewport=DESKTOP)
            http_only = await blocked.new_page()

            refused: list[str] = []

            async def refuse(ws: WebSocketRoute) -> None:
                refused.append(ws.url)
                await ws.close()

            await http_only.route_web_socket(re.compile(".*"), refuse)
            await http_only.goto(url)
            await open_chat(http_only)
            await http_only.keyboard.type("Is anyone there?")
            await http_only.keyboard.press("Enter")
            await expect(http_only.locator(".omnichat-visitor .omnichat-state")).to_have_text(
                "Sent"
            )
            await expect(http_only.locator(".omnichat-system p")).to_contain_text("we will answer")
            assert len(refused) >= 3  # it tried sockets first

            # Chloé has three chats now (her web chat capacity): the next two visitors
            # wait, and see where they stand in the acknowledgement, then as it changes.
            waiting: list[Page] = []
            for n, question in ((1, "Do you ship to Spain?"), (2, "Can I pay by card?")):
                visitor = await (await browser.new_context(viewport=DESKTOP)).new_page()
                await visitor.goto(url)
                await open_chat(visitor)
                await visitor.keyboard.type(question)
                await visitor.keyboard.press("Enter")
                # In the log (a polite live region), after the acknowledgement: announced.
                line = visitor.locator(
                    "[role=log][aria-live=polite] .omnichat-system + .omnichat-standing"
                )
                await expect(line).to_have_text(
                    re.compile(rf"^You are number {n} in the queue · about [45] min$")
                )
                waiting.append(visitor)
            first, second = waiting
            await no_serious_violations(second)
            # Chloé resolves the first chat: the first waiting visitor is hers, the second
            # is told they are next, and the first's line goes once she writes.
            assert len(s.tokens()) == 3
            await s.agent_does("resolve", s.tokens()[0])
            await expect(second.locator(".omnichat-standing")).to_have_text(
                re.compile(r"^You are number 1 in the queue · about [45] min$")
            )
            await eventually(lambda: len(s.tokens()) == 4, WAIT_MS / 1000)
            await s.agent_says("Yes, we ship to Spain.")
            await expect(first.locator(".omnichat-agent p")).to_have_text(
                ["Yes, we ship to Spain."]
            )
            await expect(first.locator(".omnichat-standing")).to_have_count(0)
            await expect(second.locator(".omnichat-standing")).to_have_count(1)
        finally:
            await browser.close()
        for name in ("webchat-desktop.png", "webchat-phone.png"):
            assert (tmp_path / name).stat().st_size > 0
