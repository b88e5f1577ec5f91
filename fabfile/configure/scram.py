"""PostgreSQL SCRAM-SHA-256 verifiers (RFC 5802 / 7677), computed and checked locally.

configure sets the app role's password as a verifier built here (`ALTER ROLE ...
PASSWORD 'SCRAM-SHA-256$...'`, on psql's stdin), so the password itself never
leaves this machine; and it checks the verifier the db node reports against the
local password, so an unchanged password costs no command.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

ITERATIONS = 4096   # PostgreSQL's default scram_iterations
_VERIFIER = re.compile(r"\ASCRAM-SHA-256\$([0-9]+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)\Z")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def scram_verifier(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    """The verifier PostgreSQL stores for `password` (ASCII passwords: SASLprep is the identity)."""
    stored, server = _keys(password, salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def scram_matches(password: str, verifier: str | None) -> bool:
    """Whether `verifier` (rolpassword) was made from `password`; False for none, md5 or garbage."""
    m = _VERIFIER.fullmatch(verifier or "")
    if not m:
        return False
    try:
        salt = base64.b64decode(m.group(2), validate=True)
        want_stored = base64.b64decode(m.group(3), validate=True)
        want_server = base64.b64decode(m.group(4), validate=True)
    except ValueError:
        return False
    stored, server = _keys(password, salt, int(m.group(1)))
    return hmac.compare_digest(stored, want_stored) and hmac.compare_digest(server, want_server)
