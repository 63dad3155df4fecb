"""Values read from channels.yaml survive pickling: the config is sent to child processes."""

from __future__ import annotations

import pickle

from router.config.source import Interpolated, Unresolved, read_source

TEXT = """\
whole: ${TOKEN}
mixed: pre-${TOKEN}-${SUFFIX:-x}
unset: ${NOT_SET}
"""


def test_interpolated_and_unresolved_values_keep_their_value_and_origin() -> None:
    data = read_source(TEXT, file="test.yaml", env={"TOKEN": "t0k3n"}).data
    copy = pickle.loads(pickle.dumps(data))
    assert copy == {"whole": "t0k3n", "mixed": "pre-t0k3n-x", "unset": "${NOT_SET}"}
    whole, mixed, unset = copy["whole"], copy["mixed"], copy["unset"]
    assert isinstance(whole, Interpolated) and (whole.raw, whole.env_only) == ("${TOKEN}", True)
    assert isinstance(mixed, Interpolated)
    assert (mixed.raw, mixed.env_only) == ("pre-${TOKEN}-${SUFFIX:-x}", False)
    assert isinstance(unset, Unresolved) and unset.raw == "${NOT_SET}"
