"""Visitors' attachments over a real listener: the size cap and the type allow-list with
their reasons, the type read from the bytes, the file on the visitor's envelope and in
the blob store, agents' files as links only their session has."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from router.blobs import BlobStore
from router.envelope import Attachment
from tests.connectors.webchat.helpers import ORIGIN, Chat, Client, chat, reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
ZIP = b"PK\x03\x04" + bytes(60)


async def started(c: Chat) -> tuple[Client, str, str]:
    client = await c.hello()
    welcome = await client.next("welcome")
    return client, welcome["visitor"], welcome["session"]


async def upload(
    c: Chat,
    session: str,
    data: bytes,
    *,
    name: str = "photo.png",
    content_type: str = "image/png",
    origin: str = ORIGIN,
) -> tuple[int, dict[str, Any]]:
    async with c.http.post(
        c.url + "/upload",
        params={"session": session, "name": name},
        data=data,
        headers={"Origin": origin, "Content-Type": content_type},
    ) as r:
        return r.status, await r.json()


async def fetch(c: Chat, path: str) -> tuple[int, bytes, dict[str, str]]:
    base = c.url.removesuffix("/chat")
    async with c.http.get(base + path) as r:
        return r.status, await r.read(), dict(r.headers)


async def test_an_oversized_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with chat(tmp_path, max_attachment_bytes=1000) as c:
        _, _, session = await started(c)
        status, body = await upload(c, session, PNG + bytes(1000))
        assert (status, body) == (413, {"error": "file larger than 1000 bytes"})
        assert not (tmp_path / "blobs").exists()


async def test_a_type_off_the_list_is_refused_whatever_the_browser_says(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        _, _, session = await started(c)
        for data in (ZIP, b"MZ\x90\x00" + bytes(60), b"\xff\xfe" + "hi".encode("utf-16-le")):
            status, body = await upload(c, session, data, name="cat.png")
            assert status == 415, data
            assert body["error"].startswith("file type not accepted: send image/png")


async def test_the_type_comes_from_the_bytes_not_the_header_or_name(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        _, _, session = await started(c)
        status, body = await upload(c, session, PNG, name="notes.txt", content_type="text/plain")
        assert status == 200
        assert body["content_type"] == "image/png"
        status, body = await upload(c, session, PDF, name="x.png", content_type="image/png")
        assert body["content_type"] == "application/pdf"
        status, body = await upload(c, session, "línea\n".encode(), name="../../etc/passwd")
        assert (body["content_type"], body["name"]) == ("text/plain", "passwd")


async def test_an_upload_needs_the_origin_and_a_session(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        _, _, session = await started(c)
        status, body = await upload(c, session, PNG, origin="https://evil.example")
        assert status == 403 and "origin" in body["error"]
        status, body = await upload(c, session[:-3] + "xyz", PNG)
        assert status == 401 and "session token" in body["error"]


async def test_uploads_are_rate_limited_like_messages(tmp_path: Path) -> None:
    async with chat(tmp_path, messages_per_minute=2) as c:
        _, _, session = await started(c)
        assert (await upload(c, session, PNG))[0] == 200
        assert (await upload(c, session, PDF))[0] == 200
        status, body = await upload(c, session, PNG)
        assert status == 429 and "rate limited" in body["error"]


async def test_a_file_is_stored_and_carried_on_the_visitor_envelope(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        client, _, session = await started(c)
        _, up = await upload(c, session, PNG, name="receipt.png")
        await client.send({"t": "msg", "cid": "c1", "text": "my receipt", "files": [up["file"]]})
        assert (await client.next("state"))["state"] == "sent"
        [env] = c.runner.taken
        sha = hashlib.sha256(PNG).hexdigest()
        assert env.attachments == [
            Attachment(
                name="receipt.png",
                content_type="image/png",
                size=len(PNG),
                sha256=sha,
                ref=f"blob://sha256/{sha}",
            )
        ]
        assert BlobStore(tmp_path / "blobs").get(env.attachments[0].ref) == PNG
        # A file alone is a message too; the visitor's own frame links it.
        await client.send({"t": "msg", "cid": "c2", "files": [up["file"]]})
        assert (await client.next("state"))["state"] == "sent"
        msg = next(f for f in client.messages() if f["cid"] == "c2")
        [shown] = msg["files"]
        assert (shown["name"], shown["size"]) == ("receipt.png", len(PNG))
        status, data, headers = await fetch(c, shown["url"])
        assert (status, data, headers["Content-Type"]) == (200, PNG, "image/png")
        assert headers["Content-Disposition"] == 'attachment; filename="receipt.png"'


async def test_a_foreign_session_can_neither_send_nor_fetch_a_file(tmp_path: Path) -> None:
    async with chat(tmp_path) as c:
        _, owner, session = await started(c)
        intruder, other, _ = await started(c)
        _, up = await upload(c, session, PDF, name="contract.pdf")
        await intruder.send({"t": "msg", "cid": "s1", "text": "mine now", "files": [up["file"]]})
        error = await intruder.next("error")
        assert (error["code"], error["cid"]) == ("no_such_file", "s1")
        assert c.runner.taken == []

        # An agent's file (stored by the agent's connector) reaches the owner as a link.
        signed = PDF + b"%signed\n"
        sha, ref = BlobStore(tmp_path / "blobs").put(signed)
        attachment = Attachment(
            name="signed.pdf", content_type="application/pdf", size=len(signed), sha256=sha, ref=ref
        )
        envelope = reply(owner, "the signed copy").model_copy(update={"attachments": [attachment]})
        assert (await c.connector.send(envelope)).status == "sent"
        frames: list[dict[str, Any]] = []
        await c.connector.sessions.join(owner, frames.append, 0, lambda n: {"t": "welcome"})
        c.connector.sessions.leave(owner, frames.append)
        [shown] = frames[-1]["files"]
        assert (shown["name"], shown["content_type"]) == ("signed.pdf", "application/pdf")
        link = shown["url"]
        assert (await fetch(c, link))[:2] == (200, signed)
        parts = link.split("/")
        for path in (
            link.replace(owner, other),  # another session's id on the owner's signature
            "/".join([*parts[:-2], "0" * 32, parts[-1]]),  # a guessed signature
            f"/chat/file/{owner}/{sha}",  # the blob ref alone
        ):
            status, data, _ = await fetch(c, path)
            assert status in (403, 404) and data != signed, path

        # Files alone, no text: shown as a message with its links, not refused.
        only = reply(owner, "").model_copy(update={"id": "files-only", "attachments": [attachment]})
        assert (await c.connector.send(only)).status == "sent"
        frames.clear()
        await c.connector.sessions.join(owner, frames.append, 0, lambda n: {"t": "welcome"})
        c.connector.sessions.leave(owner, frames.append)
        shown = [f for f in frames if f.get("id") == "files-only"]
        assert [[x["name"] for x in f["files"]] for f in shown] == [["signed.pdf"]]
