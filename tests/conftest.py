"""Real-service fixtures live in tests/harness/, one module per service."""

pytest_plugins = [
    "tests.harness.kafka",
    "tests.harness.postgres",
    "tests.harness.dovecot",
    "tests.harness.smtp",
]
