"""Real-service fixtures live in tests/harness/, one module per service."""

import logging
import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

pytest_plugins = [
    "tests.harness.common",
    "tests.harness.certs",
    "tests.harness.kafka",
    "tests.harness.postgres",
    "tests.harness.dovecot",
    "tests.harness.smtp",
]

# CI explores the same examples on every run (a failure there is reproducible and
# not a surprise of the draw), without per-example deadlines on a busy machine;
# local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process sets up logging for the whole process (a
    level, a stream); the next test gets the configuration back as it found it."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
