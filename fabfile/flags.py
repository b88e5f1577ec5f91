"""PURE: the numbers task flags take, parsed and range-checked.

invoke hands a flag's value over as the string typed (or as the default, an int or a float); these
parsers take either and return the number, or raise `FlagError` naming the flag:
`--health-timeout: expected seconds between 1 and 3600, got 'abc'`.  `FlagError` is a `ConfigError`, so
the task boundary (`fabfile.boundary.exits`) turns it into a one-line non-zero exit like any bad input.

Only plain decimal ASCII is a number here: no sign, no exponent, no `_`, no `nan`/`inf`, no other
script's digits (Python's int() and float() take all of those).
"""
from __future__ import annotations

import math
import re

from .config import ConfigError

_INTEGER = re.compile(r"\A[0-9]+\Z", re.ASCII)
_DECIMAL = re.compile(r"\A(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z", re.ASCII)


class FlagError(ConfigError):
    """A task flag's value is not usable; the message starts with the flag (`--history: ...`)."""


def flag_name(flag: str) -> str:
    """`health_timeout` or `--health-timeout` as the user types it: `--health-timeout`."""
    return flag if flag.startswith("-") else "--" + flag.replace("_", "-")


def _shown(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        return "a number too large"            # and str() of a 5000-digit int raises
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:36] + "...'"


def _range(lo: float, hi: float) -> str:
    return f"between {lo:g} and {hi:g}"


def seconds(flag: str, value: str | int | float, lo: float, hi: float) -> float:
    """A duration in seconds, lo <= value <= hi ('30', '2.5', 30 or 2.5)."""
    what = f"seconds {_range(lo, hi)}"
    if isinstance(value, bool):
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {value}")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            raise FlagError(f"{flag_name(flag)}: expected {what}, got {_shown(value)}")
        number = float(text)
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {type(value).__name__}")
    if not math.isfinite(number) or not lo <= number <= hi:
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {_shown(value)}")
    return number


def count(flag: str, value: str | int, lo: int, hi: int) -> int:
    """A whole number, lo <= value <= hi ('5' or 5; not 5.0, not '5.5')."""
    what = f"a count {_range(lo, hi)}"
    if isinstance(value, bool):
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {value}")
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text) or len(text) > 18:
            raise FlagError(f"{flag_name(flag)}: expected {what}, got {_shown(value)}")
        number = int(text)
    elif isinstance(value, int):
        number = value
    else:
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {_shown(value)}")
    if not lo <= number <= hi:
        raise FlagError(f"{flag_name(flag)}: expected {what}, got {_shown(value)}")
    return number
