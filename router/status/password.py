"""The supervisor's password (or token), kept at rest only as a salted scrypt hash.

The hash is one string, `$scrypt$n=16384,r=8,p=1$<salt>$<key>` (salt and key in
unpadded URL-safe base64), made by `python -m router.status.password` and given
to the config as `supervisor.password_hash: ${VAR}` or `password_hash_file`.
Checking costs about 60 ms of CPU at the default cost; the bounds below keep a
config from asking for more than half a second (or 130 MiB) per check.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
KEY_BYTES = 32
SALT_BYTES = 16
MIN_SECRET_CHARS = 12
_N_BOUNDS = (2**10, 2**17)
_R_BOUNDS = (1, 16)
_P_BOUNDS = (1, 4)
_MAX_WORK = 2**20  # n*r*p: about half a second of CPU per check

_FORMAT = re.compile(
    r"\$scrypt\$n=(?P<n>\d{1,7}),r=(?P<r>\d{1,2}),p=(?P<p>\d)"
    r"\$(?P<salt>[A-Za-z0-9_-]{16,88})\$(?P<key>[A-Za-z0-9_-]{22,88})"
)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, secret: str) -> bool:
        """Whether `secret` is the password; compared in constant time."""
        raw = secret.encode("utf-8", "surrogatepass")
        candidate = _derive(raw, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(candidate, self.key)


def parse(text: str) -> PasswordHash:
    """The hash written in `text`; raises ValueError naming what is wrong (never the text)."""
    m = _FORMAT.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            "expected $scrypt$n=16384,r=8,p=1$<salt>$<key>: make one with"
            " `python -m router.status.password`"
        )
    n, r, p = int(m["n"]), int(m["r"]), int(m["p"])
    for name, value, (lo, hi) in (("n", n, _N_BOUNDS), ("r", r, _R_BOUNDS), ("p", p, _P_BOUNDS)):
        if not lo <= value <= hi:
            raise ValueError(f"scrypt {name}={value} is outside {lo}..{hi}")
    if n & (n - 1):
        raise ValueError(f"scrypt n={n} is not a power of two")
    if n * r * p > _MAX_WORK:
        raise ValueError(
            f"scrypt n*r*p={n * r * p} is over {_MAX_WORK} (a check would take seconds)"
        )
    return PasswordHash(n=n, r=r, p=p, salt=_b64decode(m["salt"]), key=_b64decode(m["key"]))


def make(secret: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """A new hash string for `secret` with a random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(secret.encode("utf-8", "surrogatepass"), salt, n, r, p, KEY_BYTES)
    return f"${SCHEME}$n={n},r={r},p={p}${_b64encode(salt)}${_b64encode(key)}"


def _derive(secret: bytes, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    # scrypt needs 128*n*r bytes; OpenSSL refuses more than `maxmem` (32 MiB by default).
    maxmem = 128 * n * r * (p + 1) + 1024 * 1024
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=size, maxmem=maxmem)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main() -> int:
    """Read a password (twice, from the terminal; or one line from stdin) and print its hash."""
    if sys.stdin.isatty():
        secret = getpass.getpass("supervisor password: ")
        if getpass.getpass("again: ") != secret:
            print("the two passwords differ", file=sys.stderr)
            return 2
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < MIN_SECRET_CHARS:
        print(f"use at least {MIN_SECRET_CHARS} characters", file=sys.stderr)
        return 2
    print(make(secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
