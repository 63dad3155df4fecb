"""No code under router/ names a channel type: connectors declare, the core reads.

A quoted type name (`"email"`, `'webhook'`) in router/ is how a branch on a channel
type starts. The few left are not channel types, each for the reason given.
"""

from __future__ import annotations

import re
from pathlib import Path

from router.connector import load_registry

ROUTER = Path(__file__).resolve().parents[2] / "router"

# (file, the line's text): quoted names that are not channel types.
ALLOWED = {
    # Identity kinds any channel may carry (a form states an email, a contact a phone).
    ("routing/identity.py", 'EMAIL = "email"'),
    ("routing/identity.py", 'PHONE = "phone"'),
    # Log keys whose values are personal data, redacted.
    ("logs.py", '"email",'),
    ("logs.py", '"phone",'),
    # The error code of the email-address config field type.
    (
        "config/types.py",
        'raise PydanticCustomError("email", "expected an email address such as'
        ' support@example.com")',
    ),
}


def test_router_names_no_channel_type() -> None:
    names = "|".join(re.escape(t) for t in sorted(load_registry()))
    quoted = re.compile(rf"""(["'])({names})\1""")
    found = []
    for path in sorted(ROUTER.rglob("*.py")):
        rel = path.relative_to(ROUTER).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if quoted.search(code) and (rel, line.strip()) not in ALLOWED:
                found.append(f"router/{rel}:{number}: {line.strip()}")
    assert not found, "channel type names in the core:\n" + "\n".join(found)
