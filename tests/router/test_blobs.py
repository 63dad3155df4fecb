import hashlib
from pathlib import Path

import pytest

from router.blobs import BlobError, BlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest, ref = store.put(b"invoice.pdf bytes")
    assert digest == hashlib.sha256(b"invoice.pdf bytes").hexdigest()
    assert ref == f"blob://sha256/{digest}"
    assert store.put(b"invoice.pdf bytes") == (digest, ref)
    assert store.get(ref) == b"invoice.pdf bytes"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]


def test_bad_and_missing_refs_are_clear_errors(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match="not a blob reference"):
        store.get("file:///etc/passwd")
    with pytest.raises(BlobError, match="no such blob"):
        store.get("blob://sha256/" + "0" * 64)
