"""Store contract tests, run on SQLite and PostgreSQL."""
