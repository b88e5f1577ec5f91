"""PURE: typed readers for parsed YAML, each naming the key path of what it refuses.

Every reader takes the value and its key path (`roles.app.ports[0].port`) and
returns the value checked (or normalised), or raises `Invalid` carrying that
path.  Nothing here knows roles.yaml: `fabfile.config` composes these readers
into its sections.  The patterns are formats defined elsewhere (git, Debian,
systemd, POSIX accounts, AWS identifiers), shared by whoever checks them.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Callable

import yaml

# Every pattern is matched whole (`fullmatch`), and is anchored \A...\Z besides, so that a value with a trailing
# newline never passes (`$` matches before one), even through a `.match` or `.search` elsewhere; re.ASCII keeps
# \d, \w and \s to ASCII (no Arabic-Indic digits in an account id).
BRANCH = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9._/-]*\Z", re.ASCII)
GIT_URL = re.compile(r"\A(?:(?:https?|ssh|git|file)://[^\s\x00-\x1f\x7f]+|[\w.-]+@[\w.-]+:[^\s\x00-\x1f\x7f]+)\Z", re.ASCII)
DOTTED = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z", re.ASCII)
PACKAGE = re.compile(r"\A[a-z0-9][a-z0-9+.-]+\Z", re.ASCII)
SERVICE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9@._-]*\Z", re.ASCII)
USER = re.compile(r"\A[a-z_][a-z0-9_-]{0,31}\Z", re.ASCII)
OWNER = re.compile(r"\A[a-z_][a-z0-9_-]{0,31}(?::[a-z_][a-z0-9_-]{0,31})?\Z", re.ASCII)
MODE = re.compile(r"\A0?[0-7]{3}\Z", re.ASCII)
REGION = re.compile(r"\A[a-z]{2}(?:-[a-z]+)+-[0-9]+\Z", re.ASCII)
VPC_ID = re.compile(r"\Avpc-[0-9a-f]{8,17}\Z", re.ASCII)
SUBNET_ID = re.compile(r"\Asubnet-[0-9a-f]{8,17}\Z", re.ASCII)
AMI_ID = re.compile(r"\Aami-[0-9a-f]{8,17}\Z", re.ASCII)
AMI_OWNER = re.compile(r"\A(?:self|amazon|aws-marketplace|[0-9]{12})\Z", re.ASCII)
INSTANCE_TYPE = re.compile(r"\A[a-z][a-z0-9-]*\.[a-z0-9]+\Z", re.ASCII)


class Invalid(Exception):
    """A value at `path` is wrong; the caller prefixes the file name."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"{path}: {detail}" if path else detail)


# --- YAML with duplicate-key detection --------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, naming its key path."""

    def construct_document(self, node):
        _check_duplicates(node, "", set())
        return super().construct_document(node)


def _check_duplicates(node: yaml.Node, path: str, seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            child = join(path, str(key))
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise Invalid(child, f"duplicate key (lines {first_line[key]} and {line})")
            first_line[key] = line
            _check_duplicates(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{i}]", seen)


def load_yaml(text: str) -> Any:
    """The YAML document in `text`; Invalid for a syntax error or a key given twice."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Invalid("", f"not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise Invalid("", f"not valid YAML: {exc}") from None


# --- small typed readers ----------------------------------------------------------------

def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def mapping(value: Any, path: str, keys: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise Invalid(path, f"keys must be strings, got {key!r}")
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(keys)}"
            raise Invalid(join(path, key), f"unknown key ({hint})")
    for key in required:
        if value.get(key) is None:
            raise Invalid(join(path, key), "required")
    return value


def string(value: Any, path: str, pattern: re.Pattern | None = None, what: str = "") -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(path, f"expected {what or 'a non-empty string'}, got {type_name(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise Invalid(path, f"expected {what}, got {value!r}")
    return value


def choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise Invalid(path, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def integer(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        shown = repr(value) if isinstance(value, str) else value
        raise Invalid(path, f"expected an integer {lo}-{hi}, got {shown}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(path, f"expected true or false, got {value!r}")
    return value


def list_of(value: Any, path: str, item: Callable[[Any, str], Any]) -> tuple:
    if not isinstance(value, list):
        raise Invalid(path, f"expected a list, got {type_name(value)}")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def cidr(value: Any, path: str) -> str:
    text = string(value, path, what="a CIDR like 203.0.113.7/32")
    if "/" not in text:
        raise Invalid(path, f"expected a CIDR like 203.0.113.7/32, got {text!r}")
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise Invalid(path, f"not a valid CIDR: {exc}") from None


def file_path(value: Any, path: str, root: Path, must_exist: bool) -> Path:
    p = root / string(value, path, what="a file path")
    if must_exist and not p.is_file():
        raise Invalid(path, f"file not found: {p}")
    return p


def relative(value: Any, path: str) -> str:
    text = string(value, path, what="a relative path")
    if text.startswith("/") or ".." in Path(text).parts:
        raise Invalid(path, f"expected a path inside the project (relative, no '..'), got {text!r}")
    return text
