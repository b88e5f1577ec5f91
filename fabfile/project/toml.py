"""tomllib (Python 3.11+), or tomli where it is the backport."""
from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import InspectError


def load(text: str, path: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InspectError(f"{path}: not valid TOML ({exc})") from None
