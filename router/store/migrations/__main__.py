"""`python -m router.store.migrations revision "what changes"`: draft a migration."""

from __future__ import annotations

import sys

from router.store.migrate import revision

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m router.store.migrations revision "what changes"')
    revision(sys.argv[2])
