"""The widget in real headless Chromium (Debian's, driven by Playwright), embedded in a
shop's page from the running daemon: acknowledgement, an agent's reply through the router,
a server-side cut while three replies are sent, reload and a second tab, phone width, the
queue position in the acknowledgement and as it changes, and axe-core's accessibility check.

Skipped, with the reason, only outside CI when Chromium or Playwright is missing: in CI
.ci/system-deps installs Chromium and the test extras Playwright, so it must run.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.connectors.webchat.daemon import Site, site
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
    from playwright.async_api import (
        FileChooser,
        Page,
        ViewportSize,
        WebSocketRoute,
        async_playwright,
        expect,
    )
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
async def shop_page(
    chat_url: str, port: int, closed_url: str = "", form_url: str = ""
) -> AsyncIterator[str]:
    """The shop's page on 127.0.0.1, embedding the widget with one tag (at `/closed`, the
    chat of a channel out of hours; at `/form`, one with a pre-chat form)."""

    async def page(request: web.Request) -> web.Response:
        lang = request.match_info.get("lang") or "en"
        return web.Response(text=PAGE.format(chat=chat_url, lang=lang), content_type="text/html")

    async def closed(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(chat=closed_url, lang="en"), content_type="text/html")

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(chat=form_url, lang="en"), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/{lang:es}", page)
    app.router.add_get("/closed", closed)
    app.router.add_get("/form", form)
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


def callback_links(s: Site) -> list[str]:
    """The tel: links of the callbacks delivered to Chloé's tool."""
    conversations = [
        (r.json().get("context") or {}).get("conversation", {}) for r in s.tool.requests
    ]
    return [c["callback"]["tel"] for c in conversations if c.get("callback")]


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
            # Who has the chat, in the log (announced) before she writes.
            await expect(page.locator("[role=log] .omnichat-joined")).to_have_text(
                "Chloé Martin has joined the chat"
            )

            await s.agent_says("Hi, Chloé here: it ships today.")
            await expect(page.locator(".omnichat-agent p")).to_have_text(
                ["Hi, Chloé here: it ships today."]
            )

            # Her tool says she is typing, then that she has read: shown live, politely.
            typing = page.locator(".omnichat-typing[role=status][aria-live=polite]")
            await s.agent_signals("typing")
            await expect(typing).to_have_text("Chloé is typing…")
            await s.agent_signals("seen")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Seen")

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
            await expect(typing).to_have_text("")  # her message came: no longer typing
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
            # Seen is numbered: a new tab shows it too (typing is not replayed).
            await expect(second.locator(".omnichat-visitor .omnichat-state")).to_have_text("Seen")
            await expect(second.locator(".omnichat-typing")).to_have_count(0)

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
            # Taken: the first is told who has it, and waits in no line any more.
            await expect(first.locator(".omnichat-joined")).to_have_text(
                "Chloé Martin has joined the chat"
            )
            await expect(first.locator(".omnichat-standing")).to_have_count(0)
            await s.agent_says("Yes, we ship to Spain.")
            await expect(first.locator(".omnichat-agent p")).to_have_text(
                ["Yes, we ship to Spain."]
            )
            await expect(first.locator(".omnichat-standing")).to_have_count(0)
            await expect(second.locator(".omnichat-standing")).to_have_count(1)
            # "Call me back": the visitor types a national number; the request and the
            # router's confirmation show in the chat, and Chloé gets the callback on the
            # phone line with a tel: link.
            await open_chat(page)
            await page.get_by_role("button", name="Call me back").click()
            await page.get_by_role("textbox", name="Your phone number").fill("600 111 222")
            await no_serious_violations(page)
            await page.get_by_role("button", name="Request the call").click()
            await expect(page.locator(".omnichat-visitor p").last).to_have_text(
                "Please call me back on 600 111 222"
            )
            await expect(page.locator(".omnichat-system p").last).to_contain_text(
                "we will call you back on +34600111222"
            )
            await expect(page.get_by_role("button", name="Call me back")).to_be_focused()
            await eventually(lambda: callback_links(s) == ["tel:+34600111222"], WAIT_MS / 1000)
        finally:
            await browser.close()
        for name in ("webchat-desktop.png", "webchat-phone.png"):
            assert (tmp_path / name).stat().st_size > 0


async def test_out_of_hours_a_visitor_leaves_a_message_and_finds_the_answer_on_return(
    tmp_path: Path,
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with (
        site(tmp_path, origin) as s,
        shop_page(s.chat_url, port, s.closed_chat_url) as url,
        async_playwright() as p,
    ):
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(viewport=DESKTOP)
            page = await context.new_page()
            await page.goto(url + "closed")
            await open_chat(page)
            # It says when we open (in the visitor's own words and clock) and offers to
            # leave a message; the message box waits for that choice.
            note = page.locator(".omnichat-closed p").first
            await expect(note).to_contain_text("We are closed now. We open")
            await expect(page.get_by_role("textbox", name="Your message")).to_be_hidden()
            await page.get_by_role("button", name="Leave a message").click()
            await expect(page.get_by_role("textbox", name="Name")).to_be_focused()
            await page.keyboard.type("Ana Pérez")
            await page.get_by_role("textbox", name="Email").fill("ana@example.com")
            await page.get_by_role("checkbox", name="I agree").check()
            await page.screenshot(path=str(tmp_path / "webchat-closed.png"))
            await no_serious_violations(page)
            await page.get_by_role("button", name="Start chat").click()
            await expect(page.locator(".omnichat-status")).to_have_text("Thanks, noted.")
            await expect(page.get_by_role("textbox", name="Your message")).to_be_focused()
            await page.keyboard.type("Is the blue teapot back in stock?")
            await page.keyboard.press("Enter")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            await expect(page.locator(".omnichat-system p")).to_contain_text("we open on ")
            await page.close()

            # An ordinary conversation: it reached Chloé, who answers while the visitor is away.
            await s.token()
            [delivery] = [r.json() for r in s.tool.requests if r.json().get("token")]
            assert "Is the blue teapot back in stock?" in str(delivery)
            # The form's name and (stated) email reached her with it.
            assert "Ana Pérez" in str(delivery) and "ana@example.com" in str(delivery)
            await s.agent_says("Yes, it is back: I kept one for you.")

            back = await context.new_page()
            await back.goto(url + "closed")
            await open_chat(back)
            await expect(texts(back)).to_have_text(
                [
                    "Is the blue teapot back in stock?",
                    await back.locator(".omnichat-system p").inner_text(),
                    "Yes, it is back: I kept one for you.",
                ]
            )
            # A returning visitor is not offered the form again.
            await expect(back.get_by_role("textbox", name="Your message")).to_be_visible()
            await expect(back.get_by_role("button", name="Leave a message")).to_have_count(0)
        finally:
            await browser.close()


async def test_the_pre_chat_form_the_channels_look_and_the_satisfaction_question(
    tmp_path: Path,
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with (
        site(tmp_path, origin) as s,
        shop_page(s.chat_url, port, form_url=s.form_chat_url) as url,
        async_playwright() as p,
    ):
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = await context.new_page()
            await page.goto(url + "form")
            await open_chat(page)
            # The channel's colour and words; its form first, focused, by keyboard only.
            head = page.locator(".omnichat-head")
            await expect(head).to_have_css("background-color", "rgb(122, 31, 92)")
            await expect(page.get_by_text("Hello! Who are we talking to?")).to_be_visible()
            await expect(page.get_by_role("textbox", name="Your message")).to_be_hidden()
            await expect(page.get_by_role("textbox", name="Name")).to_be_focused()
            await page.keyboard.type("Bo Lind")
            await page.keyboard.press("Tab")
            await page.keyboard.type("bo@example.com")
            await page.get_by_role("combobox", name="Topic").select_option("Returns")
            await page.get_by_role("checkbox", name="I agree").check()
            await no_serious_violations(page)
            await page.get_by_role("button", name="Start chat").click()
            await expect(page.get_by_role("textbox", name="Your message")).to_be_focused()
            await page.keyboard.type("The lid arrived broken")
            await page.keyboard.press("Enter")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")

            # Chloé has the topic as the subject, the name and the stated email.
            await s.token()
            [delivery] = [r.json() for r in s.tool.requests if r.json().get("token")]
            for fact in ("Returns", "Bo Lind", "bo@example.com"):
                assert fact in str(delivery)
            await s.agent_says("Sorry! A new one is on its way.")
            await expect(page.locator(".omnichat-agent .omnichat-who")).to_have_text(
                ["Chloé Martin"]
            )

            # Resolved: the router's follow-up question comes with two quick replies.
            await s.agent_resolves()
            follow_up = page.locator(".omnichat-system p").last
            await expect(follow_up).to_have_text(
                "Hi Bo Lind, Chloé Martin here again: is it solved?"
            )
            replies = page.get_by_role("group", name="Was your problem solved?")
            await expect(replies.get_by_role("button")).to_have_text(
                ["5/5 Yes, solved", "1/5 Not really"]
            )
            await no_serious_violations(page)
            await replies.get_by_role("button", name="5/5 Yes, solved").click()
            answer = page.locator(".omnichat-visitor").last
            await expect(answer.locator("p")).to_have_text("5/5 Yes, solved")
            await expect(answer.locator(".omnichat-state")).to_have_text("Sent")
            await expect(replies).to_have_count(0)

            # The router read the score: satisfied, the conversation is closed.
            async def closed() -> bool:
                return await s.statuses("web-form") == ["closed"]

            await eventually(closed, WAIT_MS / 1000)
            # A reload replays the question and its answer: no buttons offered again.
            await page.reload()
            await open_chat(page)
            await expect(page.locator(".omnichat-visitor p").last).to_have_text("5/5 Yes, solved")
            await expect(page.get_by_role("group", name="Was your problem solved?")).to_have_count(
                0
            )
        finally:
            await browser.close()


async def test_a_visitor_attaches_a_file_by_keyboard(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    async with (
        site(tmp_path, origin) as s,
        shop_page(s.chat_url, port) as url,
        async_playwright() as p,
    ):
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await (await browser.new_context(viewport=DESKTOP)).new_page()
            # Listened for from the start: Playwright turns the interception on without
            # waiting, so a listener added just before the key press can miss the chooser.
            choosers: asyncio.Queue[FileChooser] = asyncio.Queue()
            page.on("filechooser", choosers.put_nowait)
            await page.goto(url)
            await open_chat(page)
            await page.keyboard.type("Hello")
            await page.keyboard.press("Enter")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            status = page.locator(".omnichat-file")

            # Not a type we take, whatever its name says: refused with the server's reason.
            attach = page.get_by_role("button", name="Attach a file")
            await attach.focus()
            await page.keyboard.press("Enter")
            zipped = b"PK\x03\x04" + bytes(60)
            await (await asyncio.wait_for(choosers.get(), WAIT_MS / 1000)).set_files(
                {"name": "photo.png", "mimeType": "image/png", "buffer": zipped}
            )
            await expect(status).to_contain_text("photo.png not attached: file type not accepted")

            await page.keyboard.press("Enter")
            await (await asyncio.wait_for(choosers.get(), WAIT_MS / 1000)).set_files(
                {"name": "receipt.png", "mimeType": "text/plain", "buffer": png}
            )
            await expect(status).to_have_text("receipt.png attached")
            await expect(attach).to_be_focused()
            await page.get_by_role("textbox", name="Your message").fill("My receipt")
            await page.keyboard.press("Enter")
            sent = page.locator(".omnichat-visitor").last
            await expect(sent.locator(".omnichat-state")).to_have_text("Sent")
            link = sent.get_by_role("link", name="receipt.png")
            href = await link.get_attribute("href")
            assert href is not None
            fetched = await page.request.get(href)
            assert fetched.status == 200 and await fetched.body() == png
            await page.screenshot(path=str(tmp_path / "webchat-attach.png"))
            await no_serious_violations(page)
        finally:
            await browser.close()
