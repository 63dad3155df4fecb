"""A fake Telegram Bot API on 127.0.0.1, at the HTTP level (python-telegram-bot's `base_url`).

`POST /bot<token>/<method>` with form-encoded or JSON fields, answered with
`{"ok": true, "result": ...}` shaped like the Bot API documentation, or
`{"ok": false, "error_code", "description"[, "parameters": {"retry_after"}]}`.
Methods: getMe, getUpdates (offset confirms every update below it; long-poll
`timeout`), deleteWebhook, setWebhook, sendMessage, getFile (a `file_path`
downloadable at `GET /file/bot<token>/<file_path>`), answerCallbackQuery,
editMessageReplyMarkup. Faults are injected per method (and chat): 429 with
`retry_after`, 403 (blocked by the user), or a timeout (no answer for longer
than the client waits). Every accepted send is recorded with its monotonic time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import orjson
from aiohttp import web

from tests.harness.common import free_port

TOKEN = "123456:TEST-fake-bot-token_abcdefghijklmn"
BOT_ID = 123456
UPLOAD_LIMIT = 50 * 1024 * 1024  # the Bot API's upload limits: documents
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024  # and photos


@dataclass
class Fault:
    kind: str  # "429", "403", "timeout"
    times: int
    chat_id: int | None = None
    retry_after: int = 1


@dataclass
class Sent:
    at: float  # time.monotonic() when the fake accepted it
    chat_id: int
    message_id: int
    text: str
    reply_to: int | None
    reply_markup: dict[str, Any] | None
    file: tuple[str, bytes] | None = None  # an uploaded document or photo: name, bytes


@dataclass
class FakeBotApi:
    token: str = TOKEN
    port: int = 0
    updates: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file_id -> path, bytes
    webhook: dict[str, Any] | None = None
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    refused: list[tuple[str, int, str, float]] = field(
        default_factory=list
    )  # method, status, chat, at
    confirmed: int = 0  # getUpdates offsets confirm every update below this
    timeout_seconds: float = 5.0  # how long a "timeout" fault holds the answer back

    def __post_init__(self) -> None:
        self._update_ids = count(1000)
        self._message_ids = count(1)
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- what tests use ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def add_update(self, payload: dict[str, Any]) -> int:
        """Queue an update (`payload` is its body without `update_id`); its id."""
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, **payload})
        self._new_update.set()
        return update_id

    def message_id(self) -> int:
        return next(self._message_ids)

    def add_file(self, file_id: str, data: bytes, path: str = "") -> None:
        self.files[file_id] = (path or f"documents/{file_id}.bin", data)

    def fail(
        self,
        method: str,
        kind: str,
        *,
        times: int = 1,
        chat_id: int | None = None,
        retry_after: int = 1,
    ) -> None:
        self.faults.setdefault(method, []).append(Fault(kind, times, chat_id, retry_after))

    def pending(self) -> list[int]:
        return [u["update_id"] for u in self.updates if u["update_id"] >= self.confirmed]

    def to(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id]

    # --- server --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params: dict[str, Any] = orjson.loads(await request.read() or b"{}")
        else:
            params = {k: _field(v) for k, v in (await request.post()).items()}
        self.calls.append((method, params))
        fault = self._fault(method, params)
        if fault is not None:
            if fault.kind == "timeout":
                await asyncio.sleep(self.timeout_seconds)
                return _error(504, "Gateway Timeout")
            if fault.kind == "429":
                self.refused.append((method, 429, str(params.get("chat_id")), time.monotonic()))
                return _error(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            self.refused.append((method, 403, str(params.get("chat_id")), time.monotonic()))
            return _error(403, "Forbidden: bot was blocked by the user")
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    def _fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self.faults.get(method, []):
            if fault.times <= 0:
                continue
            if fault.chat_id is not None and str(fault.chat_id) != str(params.get("chat_id")):
                continue
            fault.times -= 1
            return fault
        return None

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        for path, data in self.files.values():
            if path == request.match_info["path"]:
                return web.Response(body=data)
        return web.Response(status=404)

    # --- methods -------------------------------------------------------------------------

    def _me(self) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Support",
            "username": "support_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self._me()

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        self.confirmed = max(self.confirmed, offset)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            ready = [u for u in self.updates if u["update_id"] >= self.confirmed][:limit]
            left = deadline - time.monotonic()
            if ready or left <= 0:
                return ready
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), left)
            except TimeoutError:
                pass

    def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        text = str(params.get("text") or "")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        reply = params.get("reply_parameters")
        reply = orjson.loads(reply) if isinstance(reply, str) else reply
        markup = params.get("reply_markup")
        markup = orjson.loads(markup) if isinstance(markup, str) else markup
        message_id = self.message_id()
        self.sent.append(
            Sent(
                time.monotonic(),
                chat_id,
                message_id,
                text,
                reply["message_id"] if reply else None,
                markup,
            )
        )
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": {**self._me()},
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "text": text,
        }
        if markup:
            message["reply_markup"] = markup
        return message

    def _m_sendDocument(self, params: dict[str, Any]) -> Any:
        return self._upload(params, "document")

    def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        return self._upload(params, "photo")

    def _upload(self, params: dict[str, Any], kind: str) -> Any:
        """sendDocument / sendPhoto with the file uploaded (multipart, `attach://`)."""
        chat_id = int(params["chat_id"])
        ref = str(params.get(kind) or "")
        part = params.get(ref.removeprefix("attach://")) if ref.startswith("attach://") else None
        if not isinstance(part, tuple):
            return _error(400, f"Bad Request: there is no {kind} in the request")
        name, data = part
        limit = PHOTO_UPLOAD_LIMIT if kind == "photo" else UPLOAD_LIMIT
        if len(data) > limit:
            return _error(413, "Request Entity Too Large")
        message_id = self.message_id()
        caption = str(params.get("caption") or "")
        self.sent.append(Sent(time.monotonic(), chat_id, message_id, caption, None, None, part))
        file = {"file_id": f"up-{message_id}", "file_unique_id": f"u{message_id}"}
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": {**self._me()},
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
        }
        if kind == "photo":
            message["photo"] = [{**file, "width": 1, "height": 1}]
        else:
            message["document"] = {**file, "file_name": name}
        return message

    def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id"))
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        if len(data) > 20 * 1024 * 1024:
            return _error(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": len(data),
            "file_path": path,
        }

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        return {
            "message_id": int(params["message_id"]),
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
            "text": "",
        }


def _field(value: Any) -> Any:
    if isinstance(value, web.FileField):  # an upload: its name and bytes
        return (value.filename, value.file.read())
    return value if isinstance(value, str) else str(value)


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


@asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


# --- update payloads as Telegram writes them ------------------------------------------------


def user(user_id: int, first_name: str = "Ana", **extra: Any) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, **extra}


def message(
    api: FakeBotApi,
    user_id: int,
    text: str | None = "hello",
    *,
    chat_id: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `message` update's body from `user_id` in their private chat (or `chat_id`)."""
    chat = chat_id if chat_id is not None else user_id
    body: dict[str, Any] = {
        "message_id": api.message_id(),
        "from": user(user_id),
        "chat": {"id": chat, "type": "private" if chat > 0 else "group", "first_name": "Ana"},
        "date": int(time.time()),
        **extra,
    }
    if text is not None:
        body["text"] = text
    return {"message": body}


def press(api: FakeBotApi, user_id: int, card_id: int, data: str) -> dict[str, Any]:
    """A `callback_query` update: `user_id` pressed the button `data` on message `card_id`."""
    return {
        "callback_query": {
            "id": f"cb-{api.message_id()}",
            "from": user(user_id, "Chloé"),
            "chat_instance": "ci",
            "message": {
                "message_id": card_id,
                "date": 0,
                "chat": {"id": user_id, "type": "private"},
            },
            "data": data,
        }
    }
