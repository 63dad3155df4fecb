"""Email normalization: messages/s on a mixed corpus, and memory for one 25 MB message.

Prints, from the same run:
- messages/s through `connectors.email.inbound.normalize` (parse, decode,
  strip history, sanitize HTML, store attachments in a temp blob store) on the
  test corpus, next to a plain `email.message_from_bytes(policy=default)`
  parse plus `get_body()` of the same bytes (the baseline);
- the cost of the CPU budget's process hop: the same corpus through
  `router.budget.Budget` (a worker process), next to the direct calls;
- CPU seconds for each hostile input of tests/connectors/email/test_limits.py
  (each refused before parsing; unbounded, the stdlib parsers took seconds
  to minutes), next to one ordinary message;
- the peak memory (ru_maxrss of a fresh subprocess, minus that process's
  baseline after imports) for one 25 MB message with a 25 MB attachment
  (limit raised so it is stored, not skipped), for both.

Run: python bench/normalize.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import base64
import resource
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes, policy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.email.config import EmailLimits  # noqa: E402
from connectors.email.errors import MalformedMessage  # noqa: E402
from connectors.email.inbound import Options, normalize  # noqa: E402
from router.blobs import BlobStore  # noqa: E402
from router.budget import Budget  # noqa: E402
from tests.connectors.email.test_limits import ROWS  # noqa: E402

CORPUS = ROOT / "tests" / "connectors" / "email" / "corpus"
BIG = 25 * 1024 * 1024


def corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


def rate(fn, messages: list[bytes], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for raw in messages:
            fn(raw)
        done += len(messages)
    return done / (time.perf_counter() - start)


def big_message() -> bytes:
    payload = base64.encodebytes(bytes(range(256)) * (BIG // 256))
    return (
        b"From: Ana <ana@example.net>\r\nTo: support@shop.example\r\nSubject: big\r\n"
        b"Message-ID: <big@example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nthe video you asked for\r\n--b\r\n"
        b"Content-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="clip.mp4"\r\n\r\n' + payload + b"--b--\r\n"
    )


def child(kind: str) -> None:
    """Run in a subprocess: peak RSS growth for one big message."""
    raw = big_message()
    blobs_dir = tempfile.mkdtemp(prefix="bench-email-")
    opts = Options(
        max_attachment_bytes=64 * 1024 * 1024,
        limits=EmailLimits(max_message_bytes=128 * 1024 * 1024),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if kind == "omnirouter":
        env = normalize(raw, "bench", BlobStore(blobs_dir), opts)
        assert env.attachments[0].size == BIG
    else:
        msg = message_from_bytes(raw, policy=policy.default)
        for part in msg.walk():
            part.get_payload(decode=True)
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{len(raw)} {before} {peak} {took}")


def memory(kind: str) -> tuple[int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind], capture_output=True, text=True, check=True
    ).stdout.split()
    size, before, peak, took = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    return size, (peak - before) / 1024, took


def cpu(fn, raw: bytes) -> float:
    start = time.process_time()
    try:
        fn(raw)
    except MalformedMessage:
        pass
    return time.process_time() - start


def hostile() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        blobs = BlobStore(tmp)
        ordinary = (CORPUS / "plain_reply.eml").read_bytes()
        normalize(ordinary, "bench", blobs)  # warm
        took = cpu(lambda r: normalize(r, "b", blobs), ordinary)
        print(f"ordinary message ({len(ordinary)} bytes): {took * 1e3:8.2f} ms CPU")
        for what, make, limits, _ in ROWS:
            raw, opts = make(), Options(limits=limits)
            took = cpu(lambda r, o=opts: normalize(r, "b", blobs, o), raw)
            print(f"hostile: {what:42} ({len(raw):7} bytes): {took * 1e3:8.2f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    messages = corpus()
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        blobs = BlobStore(tmp)

        def ours(raw: bytes) -> None:
            try:
                normalize(raw, "bench", blobs)
            except MalformedMessage:  # the corpus holds one unusable message
                pass

        def baseline(raw: bytes) -> None:
            msg = message_from_bytes(raw, policy=policy.default)
            if hasattr(msg, "get_body"):
                body = msg.get_body()
                if body is not None:
                    try:
                        body.get_content()
                    except (LookupError, ValueError):
                        pass

        ours(messages[0])  # warm up imports and the blob directory
        ours_rate = rate(ours, messages, args.seconds)
        base_rate = rate(baseline, messages, args.seconds)
    print(f"corpus: {len(messages)} messages, {sum(map(len, messages))} bytes")
    print(f"normalize (omnirouter):           {ours_rate:10.0f} messages/s")
    print(f"baseline (message_from_bytes):    {base_rate:10.0f} messages/s")
    print(f"ratio: {base_rate / ours_rate:.2f}x the baseline's cost")
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp, Budget("bench") as budget:
        blobs = BlobStore(tmp)

        def budgeted(raw: bytes) -> None:
            try:
                budget.call(normalize, raw, "bench", blobs)
            except MalformedMessage:
                pass

        budgeted(messages[0])  # start the worker
        hop_rate = rate(budgeted, messages, args.seconds)
    print(
        f"normalize under the CPU budget:    {hop_rate:10.0f} messages/s"
        f" ({(1 / hop_rate - 1 / ours_rate) * 1e3:.2f} ms per message for the process hop)"
    )
    hostile()
    for kind in ("omnirouter", "baseline"):
        size, mib, took = memory(kind)
        print(
            f"25 MB message ({size / 1e6:.1f} MB raw), {kind:10}: peak RSS +{mib:7.1f} MiB,"
            f" {took:.2f} s"
        )


if __name__ == "__main__":
    main()
