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
import os
import re
import unicodedata
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


# --- text and YAML ------------------------------------------------------------------------

_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def utf8_text(data: bytes) -> str:
    """`data` decoded as UTF-8 (a UTF-8 byte order mark dropped); ValueError saying how to fix it otherwise."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise ValueError(f"{encoding} text (it starts with a {encoding} byte order mark): save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                         f"save it as UTF-8") from None
    if "\x00" in text:
        raise ValueError(f"not UTF-8 text (a NUL byte at offset {data.index(0)}: UTF-16 without a byte order mark, "
                         f"or not text at all): save it as UTF-8")
    return text.removeprefix("\ufeff")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, naming its key path, and turns a value
    Python cannot build (a 5000-digit integer, February 30th) into an error that names its line."""

    def construct_document(self, node):
        _check_duplicates(node, "", set())
        return super().construct_document(node)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as exc:  # noqa: BLE001 - ValueError, OverflowError, AttributeError (`!!timestamp x`)...
            raise yaml.constructor.ConstructorError(None, None, f"cannot read {shown(node.value, 40)}: {exc}",
                                                    node.start_mark) from None


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
    except yaml.reader.ReaderError as exc:   # a character YAML refuses (a control character)
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        line = text.count("\n", 0, exc.position) + 1
        raise Invalid("", f"not valid YAML: character U+{code:04X} is not allowed, at line {line}") from None
    except yaml.YAMLError as exc:
        raise Invalid("", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise Invalid("", "not valid YAML: nested too deeply") from None


# --- small typed readers ----------------------------------------------------------------

_PLAIN_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z", re.ASCII)


def join(path: str, key: str) -> str:
    """`path.key`, or `path['key']` for a key that is empty or holds anything but [A-Za-z0-9_-]."""
    if not _PLAIN_KEY.fullmatch(key):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if value == "" and isinstance(value, str):
        return "an empty string"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: scalars by repr (cut to `limit`), containers by type only
    (the repr of a YAML alias bomb would be exponential)."""
    if isinstance(value, (list, dict, set, tuple)):
        return type_name(value)
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an integer of {value.bit_length()} bits"      # and repr() of a 5000-digit one raises
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _unprintable(text: str) -> str | None:
    """What is wrong with a character of `text` that no roles.yaml value should hold, if any."""
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn") or ch == "\ufffd":
            kind = "a lone surrogate" if category == "Cs" else "a control or invisible character"
            return f"{kind} (U+{ord(ch):04X}) at position {i}"
    return None


def mapping(value: Any, path: str, keys: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected a mapping, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise Invalid(path, f"keys must be strings, got {shown(key)}")
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
        raise Invalid(path, f"expected {what}, got {shown(value)}")
    bad = _unprintable(value)
    if bad is not None:
        raise Invalid(path, f"expected {what or 'a non-empty string'}, got {shown(value)}: it holds {bad}")
    return value


def choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise Invalid(path, f"expected one of {', '.join(choices)}, got {shown(value)}")
    return value


def integer(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Invalid(path, f"expected an integer {lo}-{hi}, got {shown(value)}")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(path, f"expected true or false, got {shown(value)}")
    return value


def list_of(value: Any, path: str, item: Callable[[Any, str], Any]) -> tuple:
    if not isinstance(value, list):
        raise Invalid(path, f"expected a list, got {type_name(value)}")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


WORLD = ("0.0.0.0/0", "::/0")   # a rule from one of these is open to the whole internet


def cidr(value: Any, path: str) -> str:
    text = string(value, path, what="a CIDR like 203.0.113.7/32")
    if "/" not in text:
        raise Invalid(path, f"expected a CIDR like 203.0.113.7/32, got {shown(text)}")
    if "%" in text:
        raise Invalid(path, f"not a valid CIDR: {shown(text)} has a scope id (%...), which a security group "
                            f"rule cannot hold")
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise Invalid(path, f"not a valid CIDR: {exc}") from None


# --- paths on this machine ----------------------------------------------------------------

_ENV_VAR = re.compile(r"\$(?:[A-Za-z_]|\{)", re.ASCII)


def local_path(value: Any, path: str, root: Path, what: str = "a path") -> Path:
    """A path on this machine: `~` and `~user` expanded, `$VAR` refused, relative ones against `root`."""
    text = string(value, path, what=what)
    if _ENV_VAR.search(text):
        raise Invalid(path, f"{shown(text)} names an environment variable, which whipup does not expand: "
                            f"write the path out (a leading ~ is expanded)")
    if text.startswith("~"):
        expanded = os.path.expanduser(text)
        if expanded.startswith("~"):
            raise Invalid(path, f"cannot expand {shown(text.split('/')[0])} in {shown(text)}: "
                                f"no such user, or no home directory")
        text = expanded
    return root / text


def own_directory(p: Path, path: str) -> Path:
    """A directory whipup may make its own, 0700: not /, an existing top-level directory, a home directory, or
    a shared (world-writable) one such as /tmp, which chmod 0700 would break for everyone else."""
    try:
        real = p.resolve()
        shared = real.is_dir() and bool(real.stat().st_mode & 0o002)
    except (OSError, RuntimeError) as exc:    # RuntimeError: a symlink loop
        raise Invalid(path, f"cannot resolve {p}: {getattr(exc, 'strerror', None) or exc}") from None
    homes = {Path(os.path.expanduser("~")).resolve(), Path("/root"), Path("/home")}
    top = len(real.parts) <= 1 or (len(real.parts) == 2 and real.exists())   # /, or an existing /tmp, /srv...
    if top or real in homes or real.parent == Path("/home") or shared:
        raise Invalid(path, f"{p} is {'a shared directory' if shared else 'a system or home directory'}, and whipup "
                            f"makes its state dir 0700: name a directory of its own (like ~/.whipup)")
    return p


def file_path(value: Any, path: str, root: Path, must_exist: bool) -> Path:
    p = local_path(value, path, root, what="a file path")
    if must_exist and not p.is_file():
        raise Invalid(path, f"file not found: {p}")
    return p


def text_file(p: Path, path: str) -> str:
    """The text of file `p` (named by key `path`), read as UTF-8; Invalid naming the key otherwise."""
    try:
        return utf8_text(p.read_bytes())
    except OSError as exc:
        raise Invalid(path, f"cannot read {p}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Invalid(path, f"{p}: {exc}") from None


def key_file(value: Any, path: str, root: Path) -> Path:
    """An SSH key file that exists and is UTF-8 text (provision checks a public key's format before any call)."""
    p = file_path(value, path, root, must_exist=True)
    text_file(p, path)
    return p


def absolute(value: Any, path: str) -> str:
    """A path on the hosts: absolute, no '..'."""
    if not isinstance(value, str) or not value.startswith("/") or ".." in Path(value).parts:
        raise Invalid(path, f"expected an absolute path without '..', got {shown(value)}")
    return string(value, path, what="an absolute path without '..'")


def octal_mode(value: Any, path: str) -> str:
    """A file mode as a quoted octal string ('644' or '0644'), as four digits."""
    if not isinstance(value, str) or not MODE.fullmatch(value):
        raise Invalid(path, f"expected a quoted octal string like '0644', got {shown(value)}")
    return value.rjust(4, "0")


def relative(value: Any, path: str) -> str:
    text = string(value, path, what="a relative path")
    if text.startswith(("/", "~")) or ".." in Path(text).parts or _ENV_VAR.search(text):
        raise Invalid(path, f"expected a path inside the project (relative, no '..'), got {shown(text)}")
    return text
