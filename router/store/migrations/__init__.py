"""Alembic migration scripts for the store (run by `router.store.migrate`)."""
