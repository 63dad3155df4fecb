"""Answers and the transcript by email in real headless Chromium, by keyboard: the
leave-a-message form's consent box, "Email me the transcript", and its own small form when
no email was agreed to. The connector alone serves the widget (what the router does with
the requests is tested in tests/router/routing/test_answer_at.py and, through the daemon,
test_daemon_by_email.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.connectors.webchat.helpers import chat
from tests.connectors.webchat.test_browser import (
    ARGS,
    CHROMIUM,
    DESKTOP,
    WAIT_MS,
    async_playwright,
    expect,
    no_serious_violations,
    open_chat,
    pytestmark,
    shop_page,
)
from tests.harness.common import eventually, free_port

__all__ = ["pytestmark"]  # Chromium's marks and skip, as the widget's other browser tests

ANA = "ana@example.com"


def closed(_channel: str, now: datetime) -> datetime:
    return now + timedelta(hours=15)


async def test_the_visitor_agrees_to_email_answers_and_asks_for_the_transcript(
    tmp_path: Path,
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with (
        chat(
            tmp_path, opens_at=closed, allowed_origins=[origin], answer_by_email="support-email"
        ) as c,
        shop_page(c.url, port, c.url) as url,
        async_playwright() as p,
    ):
        expect.set_options(timeout=WAIT_MS)
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # Out of hours: the leave-a-message form offers answers by email, unticked.
            page = await (await browser.new_context(viewport=DESKTOP)).new_page()
            await page.goto(url + "closed")
            await open_chat(page)
            await page.get_by_role("button", name="Leave a message").click()
            await page.keyboard.type("Ana")
            await page.get_by_role("textbox", name="Email").fill(ANA)
            await page.get_by_role("checkbox", name="I agree").check()
            by_email = page.get_by_role("checkbox", name="Answer me by email too")
            await expect(by_email).not_to_be_checked()
            await by_email.focus()
            await page.keyboard.press("Space")
            await expect(by_email).to_be_checked()
            await no_serious_violations(page)
            await page.get_by_role("button", name="Start chat").click()
            await expect(page.get_by_role("textbox", name="Your message")).to_be_focused()
            await page.keyboard.type("Is the blue teapot back?")
            await page.keyboard.press("Enter")
            await expect(page.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            [left] = c.runner.taken
            assert left.answer_at is not None and left.answer_at.value == ANA

            # The transcript, by keyboard: asked of the router at once.
            ask = page.get_by_role("button", name="Email me the transcript")
            await ask.focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("alert")).to_have_text(
                "Asked: the transcript is on its way."
            )
            await eventually(lambda: len(c.runner.taken) == 2, WAIT_MS / 1000)
            asked = c.runner.taken[-1]
            assert asked.request == "transcript" and asked.answer_at == left.answer_at

            # Another visitor left no email: the button asks for it, with the consent box.
            other = await (await browser.new_context(viewport=DESKTOP)).new_page()
            await other.goto(url + "closed")
            await open_chat(other)
            await other.get_by_role("button", name="Leave a message").click()
            await other.get_by_role("checkbox", name="I agree").check()
            await other.get_by_role("button", name="Start chat").click()
            await other.keyboard.type("Hola")
            await other.keyboard.press("Enter")
            await expect(other.locator(".omnichat-visitor .omnichat-state")).to_have_text("Sent")
            assert c.runner.taken[-1].answer_at is None
            await other.get_by_role("button", name="Email me the transcript").click()
            email = other.locator("#omnichat-t-email")
            await expect(email).to_be_focused()
            await other.keyboard.type("bo@example.com")
            await other.locator("#omnichat-t-agree").check()
            await no_serious_violations(other)
            await other.get_by_role("button", name="Send me the transcript").click()
            await expect(other.get_by_role("alert")).to_have_text(
                "Asked: the transcript is on its way."
            )
            await eventually(lambda: c.runner.taken[-1].request == "transcript", WAIT_MS / 1000)
            last = c.runner.taken[-1]
            assert last.answer_at is not None and last.answer_at.value == "bo@example.com"
        finally:
            await browser.close()
