from dataclasses import replace
from typing import Any

import pytest

from router.connector import ConnectorSpec, load_registry


def _fake_factory(name: str, settings: Any) -> Any:
    raise AssertionError("never started in these tests")


@pytest.fixture(scope="session")
def registry() -> dict[str, ConnectorSpec]:
    """The installed connectors, given runtimes so channels may be enabled."""
    return {t: replace(s, factory=_fake_factory) for t, s in load_registry().items()}
