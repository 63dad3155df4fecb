"""The content-addressed blob store: attachments and raw inputs, stored once by hash.

Large binaries never ride on the bus; envelopes carry `blob://sha256/<hex>`
references. The default store is a local directory (`blobs.path`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from router.errors import OmniError

_REF = re.compile(r"^blob://sha256/([0-9a-f]{64})$")


class BlobError(OmniError):
    """A blob could not be stored or found."""


DEFAULT_MAX_ATTACHMENT = 25 * 1024 * 1024  # `blobs.max_attachment_bytes` unless set


class BlobStore:
    def __init__(
        self, root: str | Path, max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT
    ) -> None:
        self.root = Path(root)
        # `blobs.max_attachment_bytes`: the largest attachment a channel without a limit
        # of its own keeps (the store itself takes any size).
        self.max_attachment_bytes = max_attachment_bytes

    @staticmethod
    def ref_for(sha256: str) -> str:
        return f"blob://sha256/{sha256}"

    def _path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, data: bytes) -> tuple[str, str]:
        """Store `data` durably; return (sha256 hex, reference). Storing twice is free."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, path)  # atomic: readers never see half a blob
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise BlobError(f"cannot store blob: {exc}", retriable=True) from exc
        return digest, self.ref_for(digest)

    def path(self, ref: str) -> Path:
        match = _REF.match(ref)
        if match is None:
            raise BlobError(f"not a blob reference: {ref!r}")
        return self._path(match.group(1))

    def get(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError as exc:
            raise BlobError(f"no such blob: {ref}") from exc
        except OSError as exc:
            raise BlobError(f"cannot read blob {ref}: {exc}", retriable=True) from exc
