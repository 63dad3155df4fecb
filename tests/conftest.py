"""Real-service fixtures live in tests/harness/, one module per service."""

import os

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
