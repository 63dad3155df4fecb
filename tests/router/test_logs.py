import io
import logging

import orjson
import pytest
import structlog

from router.logs import redact_text, setup_logging


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
    for h in list(logging.getLogger().handlers):
        if type(h).__name__ == "_ToStructlog":
            logging.getLogger().removeHandler(h)


@pytest.mark.parametrize(
    ("raw", "must_not_contain", "must_contain"),
    [
        ("from ana.perez@example.com", "ana.perez", "***@example.com"),
        ("call +34 612 345 678 now", "612 345", "78"),
        ("tel 0044-20-7946-0958", "7946", "58"),
        ("bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw8 ok", "AAHdqTcv", "[redacted]"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGci", "[redacted]"),
    ],
)
def test_redact_text(raw: str, must_not_contain: str, must_contain: str) -> None:
    out = redact_text(raw)
    assert must_not_contain not in out
    assert must_contain in out


def test_our_ids_and_small_numbers_survive() -> None:
    assert redact_text("8badde10c760e9b702defb4b5e225de7") == "8badde10c760e9b702defb4b5e225de7"
    assert redact_text("offset 1234 partition 5") == "offset 1234 partition 5"


def json_stream() -> tuple[io.TextIOWrapper, io.BytesIO]:
    out = io.BytesIO()
    return io.TextIOWrapper(out), out  # keep the wrapper alive: it closes `out` when collected


def test_json_logs_are_redacted_by_default() -> None:
    stream, out = json_stream()
    setup_logging(fmt="json", stream=stream)
    structlog.get_logger("t").info(
        "hello", sender="ana@example.com", password="hunter2", nested={"api_key": "k", "n": 3}
    )
    line = orjson.loads(out.getvalue().splitlines()[-1])
    assert line["event"] == "hello"
    assert line["sender"] == "***@example.com"
    assert line["password"] == "[redacted]"
    assert line["nested"] == {"api_key": "[redacted]", "n": 3}
    assert line["level"] == "info"


def test_redaction_can_be_turned_off() -> None:
    stream, out = json_stream()
    setup_logging(fmt="json", redact=False, stream=stream)
    structlog.get_logger("t").info("hello", sender="ana@example.com")
    assert orjson.loads(out.getvalue().splitlines()[-1])["sender"] == "ana@example.com"


def test_library_logs_go_through_the_same_pipeline() -> None:
    stream, out = json_stream()
    setup_logging(fmt="json", stream=stream)
    logging.getLogger("aiokafka.consumer").warning("lost contact with bob@example.com")
    line = orjson.loads(out.getvalue().splitlines()[-1])
    assert line["event"] == "lost contact with ***@example.com"
    assert line["logger"] == "aiokafka.consumer"
    assert line["level"] == "warning"
