"""Deliveries POSTed to a real HTTP receiver on 127.0.0.1: body, headers, signature, outcomes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.webhook.inbound import verify
from tests.connectors.webhook.helpers import (
    KEY,
    MADE_AT,
    delivery,
    listening,
    receiver,
    send,
    webhook_config,
)
from tests.harness.common import free_port

SECRET_PATH = "/services/T0001/B0002/XyZsecretPart"
SECRET_QUERY = "sig=QueryS3cret"


async def test_body_headers_and_signature(tmp_path: Path) -> None:
    async with receiver() as tool, listening(tmp_path) as hooks:
        env = delivery()
        hooks.reach("chloe", tool.url(SECRET_PATH))
        before = time.time()
        result = await hooks.connector.send(env)
        assert result.status == "sent", result
        [got] = tool.requests
        assert got.path_qs == SECRET_PATH
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Omnirouter-Id"] == env.id
        timestamp = int(got.headers["X-Omnirouter-Timestamp"])
        assert int(before) <= timestamp <= time.time()
        # The receiver's check, with the shared secret, passes...
        verify(
            KEY,
            got.headers["X-Omnirouter-Timestamp"],
            got.headers["X-Omnirouter-Signature"],
            got.body,
            now=time.time(),
            max_skew=300,
        )
        assert got.headers["X-Omnirouter-Signature"].startswith("v1=")
        assert got.json() == {
            "v": 1,
            "id": env.id,
            "event": "assigned",
            "agent": {"id": "chloe", "name": "Chloé Martin", "timezone": None, "language": None},
            "conversation_id": "conv-1",
            "subject": "[#K7M2] Invoice charged twice",
            "text": "Assigned: conversation #K7M2 on support-email",
            "token": "conv-1.signature",
            "reason": {"rule": "best_qualified"},
            "note": None,
            "sla_due": None,
            "human": {"answer_by": None, "why_you": "best qualified"},
            "context": env.delivery.model_dump(mode="json")["context"],
            "sent_at": MADE_AT.isoformat(),
        }


async def test_a_retry_carries_the_same_id_and_body(tmp_path: Path) -> None:
    async with receiver(status=503) as tool, listening(tmp_path) as hooks:
        env = delivery()
        hooks.reach("chloe", tool.url())
        assert (await hooks.connector.send(env)).status == "retry"
        tool.status = 200
        assert (await hooks.connector.send(env)).status == "sent"
        first, second = tool.requests
        assert first.headers["X-Omnirouter-Id"] == second.headers["X-Omnirouter-Id"] == env.id
        assert first.body == second.body


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "sent"),
        (202, "sent"),
        (204, "sent"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (429, "retry"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
        (301, "failed"),  # not followed: a POST to a moved URL needs the config changed
    ],
)
async def test_http_status_decides(tmp_path: Path, status: int, outcome: str) -> None:
    async with receiver(status=status) as tool, listening(tmp_path) as hooks:
        result = await send(hooks, tool.url())
        assert result.status == outcome, result
        assert len(tool.requests) == 1
        if outcome != "sent":
            assert f"HTTP {status}" in result.detail
            assert "127.0.0.1" in result.detail


async def test_timeout_is_retried(tmp_path: Path) -> None:
    cfg = webhook_config(timeout=1)
    async with receiver(delay=3) as tool, listening(tmp_path, cfg=cfg) as hooks:
        started = time.monotonic()
        result = await send(hooks, tool.url())
        assert result.status == "retry"
        assert "timed out" in result.detail
        assert time.monotonic() - started < 2.5


async def test_connection_refused_is_retried(tmp_path: Path) -> None:
    async with listening(tmp_path) as hooks:
        result = await send(hooks, f"http://127.0.0.1:{free_port()}/x")
        assert result.status == "retry"


@pytest.mark.parametrize("status", [200, 404, 500])
async def test_the_urls_path_and_query_are_never_logged(tmp_path: Path, status: int) -> None:
    async with receiver(status=status) as tool, listening(tmp_path) as hooks:
        url = tool.url(f"{SECRET_PATH}?{SECRET_QUERY}")
        with capture_logs() as logs:
            result = await send(hooks, url)
            await send(hooks, f"http://127.0.0.1:{free_port()}{SECRET_PATH}")
        assert len(tool.requests) == 1
        assert tool.requests[0].path_qs == f"{SECRET_PATH}?{SECRET_QUERY}"  # it was used
        assert logs, "the outcome is logged"
        assert any(entry.get("host") == "127.0.0.1" for entry in logs)
        written = repr(logs) + result.detail
        for secret in ("XyZsecretPart", "QueryS3cret", "T0001", "s3cret-signing-key"):
            assert secret not in written


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/hooks/XyZsecretPart", "http://[::1/XyZsecretPart"]
)
async def test_unusable_url_fails_without_quoting_it(tmp_path: Path, url: str) -> None:
    async with listening(tmp_path) as hooks:
        with capture_logs() as logs:
            result = await send(hooks, url)
        assert result.status == "failed"
        assert "sink url is not usable" in result.detail
        assert "XyZsecretPart" not in result.detail + repr(logs)
