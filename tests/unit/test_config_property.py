"""A property of the loader: whatever roles.yaml holds, it is loaded or refused with a ConfigError that says
where, never another exception, and a refused file reaches no cloud.

The shipped roles.yaml is mutated at random (hypothesis): a value replaced by a random string, number, list,
mapping or None (or by one of the values known to hurt: 'postgres', '0.0.0.0/0', '~', '$HOME', 'demo\\n', ...),
a value's type changed, a key deleted, added or renamed, or a value's text replaced by raw YAML (an unquoted
date or 5000-digit number, a tag, an anchor, deep nesting), then the file re-encoded (Latin-1, UTF-16, UTF-32)
or truncated.  For each example:

- `load_config` returns a Config or raises ConfigError, whose message starts with the file name and then
  names a key path (`roles.app.ports[0].from: ...`), or says the file is not UTF-8, not YAML, empty, or not
  a mapping; what it accepts also passes `check_templates` and the templates' rehearsal, or fails them with
  their own errors (ConfigError, TemplateError);
- through the task boundary (`fab provision` in a subprocess, the cloud endpoint a recorder on loopback):
  no traceback, and a file the loader refuses makes no API call at all; one it accepts, no mutating call.

Examples per run: 300 in-process (test_mutated_roles_yaml_loads_or_says_where) and 8 through `fab`
(test_mutated_roles_yaml_at_the_task_boundary); about 15 s in all.  The counts are printed at the end of
the module (`pytest -s` shows them).
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from loopback_cloud import recording

from fabfile.config import ConfigError, check_templates, load_config
from fabfile.configure.templates import TemplateError, rehearse
from fabfile.provision.accounting import is_mutating

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TEXT = (ROOT / "roles.yaml").read_text(encoding="utf-8")
SHIPPED = yaml.safe_load(SHIPPED_TEXT)
IN_PROCESS_EXAMPLES = 300
BOUNDARY_EXAMPLES = 8
RUNS = {"in-process": 0, "refused": 0, "through fab": 0}


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _paths(value, prefix + (i,))


KEYS = sorted({k for p in _paths(SHIPPED) for k in p if isinstance(k, str)} | {"public", "admin_public", "dest"})
HURTFUL = ["", " ", "demo\n", "postgres", "root", "admin", "sudo", "all", "pg_x", "a" * 40, "0.0.0.0/0", "::/0",
           "10.0.0.1/8", "fe80::1%eth0/64", "~", "~/x", "~nobody-here/x", "$HOME", "${X}/y", "/", "/tmp", "..",
           "../x", "\x00", "\u202e", "\ud800", "caf\u00e9", "\u0661\u0662", "true", "null", "0644", "999", "t3.small",
           "app", "proxy", "db", "worker", "sg-x", "nginx\n", "-", "2001-02-30", "9" * 5000, "*", "&a", "{{ x }}",
           "etc/x.conf.j2", "/etc/x", "https://example.com/x.git"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(-1, 70000),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(HURTFUL))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(-2, 2), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(keys, inner, max_size=3)), max_leaves=6)


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _retyped(value, kind: int):
    return [str(value), [value], {"value": value}, None, True, len(str(value)), str(value).upper()][kind]


@st.composite
def structural(draw, data):
    """One change to the tree `data`, in place: replace, retype, delete, add or rename."""
    path = draw(st.sampled_from([p for p in _paths(data) if p]))
    parent, last = _get(data, path[:-1]), path[-1]
    op = draw(st.sampled_from(["replace", "replace", "retype", "delete", "add", "rename"]))
    if op == "replace":
        parent[last] = draw(values)
    elif op == "retype":
        parent[last] = _retyped(parent[last], draw(st.integers(0, 6)))
    elif op == "delete":
        del parent[last]
    elif op == "add":
        target = _get(data, path)
        if isinstance(target, dict):
            target[draw(keys)] = draw(values)
        elif isinstance(target, list):
            target.append(draw(values))
        else:
            parent[last] = draw(values)
    elif isinstance(parent, dict):
        new = draw(st.one_of(st.sampled_from(KEYS), st.text(max_size=10),
                             st.sampled_from([str(last)[:-1], f"{last}s", str(last).upper(), f"{last}\n"])))
        parent[new] = parent.pop(last)


# YAML text a dump of Python values never writes: unquoted dates and huge numbers, tags, anchors, nesting
RAW_YAML = ["2001-02-30", "2001-12-14t21:59:43.10-05:00", "9" * 5000, "0x" + "f" * 5000, "1e1000", "-.inf", ".nan",
            "0o17", "1:20", "1_000", "!!float x", "!!int x", "!!binary ~~~", "!!timestamp x", "!!set {a, b}",
            "!!python/name:os.system", "!custom x", "&a [*a]", "*nowhere", "[" * 3000 + "]" * 3000, "{a: 1, a: 2}",
            "{? [a, b] : 1}", "'unterminated", "\"\\ud800\"", "\"\\x00\"", "\t", "\x01", "|\n  two\n  lines", "~",
            "yes", "no", "on", "=", "<<: {a: 1}", "[a, *b]", "{x: &y [*y]}", "- a\n- b", "@x", "`x", "%x"]
VALUE_LINES = [i for i, line in enumerate(SHIPPED_TEXT.splitlines(True))
               if re.match(r"\s*[a-z_]+: \S", line) and not line.lstrip().startswith("#")]


@st.composite
def textual(draw) -> str:
    """The shipped file's text with the value on one `key: value` line replaced by raw YAML."""
    lines = SHIPPED_TEXT.splitlines(True)
    i = draw(st.sampled_from(VALUE_LINES))
    key = lines[i].split(":", 1)[0]
    lines[i] = f"{key}: {draw(st.one_of(st.sampled_from(RAW_YAML), st.text(max_size=12)))}\n"
    return "".join(lines)


@st.composite
def mutated_files(draw) -> bytes:
    """The shipped roles.yaml, changed 0-3 times, then re-encoded or truncated (or not)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        text = SHIPPED_TEXT                           # the file itself, comments and all: only its bytes change
    elif kind <= 2:
        text = draw(textual())
    else:
        data = copy.deepcopy(SHIPPED)
        for _ in range(draw(st.integers(1, 3))):
            draw(structural(data))
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8"] * 8 + ["latin-1", "utf-16", "utf-16-le", "utf-32"]))
    raw = text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
    if draw(st.integers(0, 7)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


KEY_PATH = re.compile(r"""(?:[A-Za-z0-9_-]+|\[(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\])"""
                      r"""(?:\.[A-Za-z0-9_-]+|\[[0-9]+\]|\[(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\])*: """)
FILE_LEVEL = ("not valid YAML: ", "not UTF-8 text (", "UTF-16 text (", "UTF-32 text (", "empty file",
              "expected a mapping, got ", "keys must be strings, got ")


def check_message(message: str) -> None:
    assert message.startswith("roles.yaml: "), message
    rest = message[len("roles.yaml: "):]
    assert rest.startswith(FILE_LEVEL) or KEY_PATH.match(rest), f"names no key path: {message!r}"
    assert len(message) < 2000, f"a message of {len(message)} characters"
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project directory (the example app, the templates) and a HOME of its own, for `~` to expand into."""
    root = tmp_path_factory.mktemp("property")
    (root / "examples").symlink_to(ROOT / "examples")
    (root / "templates").symlink_to(ROOT / "templates")
    (root / "home").mkdir()
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(root / "home")
    yield root
    os.environ["HOME"] = old if old is not None else ""
    if old is None:
        del os.environ["HOME"]
    print(f"\ntest_config_property: {RUNS['in-process']} examples in-process ({RUNS['refused']} refused), "
          f"{RUNS['through fab']} through fab provision")


def load_or_refuse(path: Path):
    """The property, in-process: the Config, or the ConfigError's message (checked)."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        check_message(str(exc))
        return str(exc)
    try:
        check_templates(cfg)
        rehearse(cfg)
    except (ConfigError, TemplateError):
        pass
    return cfg


@settings(max_examples=IN_PROCESS_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=mutated_files())
def test_mutated_roles_yaml_loads_or_says_where(project, raw):
    path = project / "roles.yaml"
    path.write_bytes(raw)
    RUNS["in-process"] += 1
    RUNS["refused"] += isinstance(load_or_refuse(path), str)


def fab_provision(cwd: Path, port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"WHIPUP_SANDBOX_PORT": str(port), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "fabric", "-r", str(ROOT), "provision", "--no-wait-ssh"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@settings(max_examples=BOUNDARY_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=mutated_files())
def test_mutated_roles_yaml_at_the_task_boundary(project, raw):
    work = Path(tempfile.mkdtemp(dir=project))
    (work / "examples").symlink_to(ROOT / "examples")
    (work / "templates").symlink_to(ROOT / "templates")
    (work / "roles.yaml").write_bytes(raw)
    outcome = load_or_refuse(work / "roles.yaml")
    if not isinstance(outcome, str):   # accepted: provision will write keys into the state dir; keep it in here
        assume(project in outcome.cluster.state_dir.resolve().parents)
    RUNS["through fab"] += 1
    with recording() as (port, actions):
        p = fab_provision(work, port)
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    assert p.returncode != 0    # refused, or the cloud refused the first call
    if isinstance(outcome, str):
        assert outcome in p.stderr
        assert actions == [], f"a refused roles.yaml reached the cloud: {actions}"
    else:
        assert [a for a in actions if is_mutating(a)] == [], actions
