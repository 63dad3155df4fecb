"""Visitors' attachments (pure): the content type read from the bytes, and the signed
links a session's files are fetched by.

The browser's `Content-Type` and the file name's extension are never trusted: a file
is what its first bytes say, and only the types in `ALLOWED` are taken. A link names
the visitor and the file's sha256 and carries an HMAC of both under the session key,
so only the session a file was shown in has a link to it, and a blob ref alone (or
another session's id) fetches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re

ALLOWED = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
)
MAX_FILES = 10  # per message
MAX_NAME = 200
SHA = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE = re.compile(r"[^\w .()+-]")
_CONTROLS = bytes(c for c in range(32) if c not in (9, 10, 13)) + b"\x7f"


def sniff(data: bytes) -> str | None:
    """The allowed content type `data` is by its magic numbers; None for anything else
    (text: UTF-8 with no control characters but tab and line breaks)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data and _is_text(data):
        return "text/plain"
    return None


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    # bytes.translate runs in C: a few MB take milliseconds.
    return len(data.translate(None, _CONTROLS)) == len(data)


def safe_name(name: str | None, content_type: str) -> str:
    """A file name fit for a header and a page: no path, no odd characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")[:MAX_NAME]
    return base or "file." + content_type.rsplit("/", 1)[-1].replace("plain", "txt")


def _mac(key: bytes, visitor: str, sha256: str) -> str:
    msg = f"file:{visitor}:{sha256}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def link(path: str, key: bytes, visitor: str, sha256: str, name: str) -> str:
    """The path (under the chat's `path`) `visitor` fetches the file by."""
    return f"{path}/file/{visitor}/{sha256}/{_mac(key, visitor, sha256)}/{name}"


def link_ok(keys: list[bytes], visitor: str, sha256: str, sig: str) -> bool:
    return any(hmac.compare_digest(_mac(k, visitor, sha256), sig) for k in keys)
