"""The bad-input corpus: each broken input gives a clear error naming the file, key or flag,
a non-zero exit, and makes no AWS API call.

Every case runs `fab` as a user would, in a fresh process, with the cloud endpoint pointed at a
recorder of its own on loopback: any request that reached it would be an API call, and the test fails.
(The processes run a few at a time, up front; each test then checks its case's outcome.)
(The corpus of inputs that need a running cluster lives in tests/e2e/test_bad_input_hosts.py.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from loopback_cloud import recording

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "roles.yaml").read_text())


@pytest.fixture(scope="module")
def recorder():
    """`recording()` as a fixture, shared by a module's tests."""
    with recording() as recorded:
        yield recorded


def run_fab(tmp: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "WHIPUP_SANDBOX_PORT": str(port),            # the sandbox target's endpoint: the recorder
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",  # and any aws call's too
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",          # never ask an instance metadata service
        "PYTHONPATH": str(ROOT),
    })
    return subprocess.run([sys.executable, "-m", "fabric", "-r", str(ROOT), *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def mutate(fn):
    data = yaml.safe_load(yaml.safe_dump(SHIPPED))
    fn(data)
    return yaml.safe_dump(data, sort_keys=False)


def setitem(path, value):
    def fn(data):
        d = data
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return fn


def delitem(path):
    def fn(data):
        d = data
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    return fn


DUPLICATE_ROLE = (ROOT / "roles.yaml").read_text().replace("\nroles:\n", "\nroles:\n  app:\n    count: 1\n", 1)

# (id, roles.yaml text (or bytes) or None for the shipped file, fab arguments, what stderr must say)
CASES = [
    ("not-yaml", "cluster: [unclosed\n", ["provision"], "roles.yaml: not valid YAML"),
    ("empty-file", "", ["provision"], "roles.yaml: empty file"),
    ("top-level-list", "- a\n- b\n", ["status"], "roles.yaml: expected a mapping"),
    ("unknown-top-key", mutate(setitem(["rolez"], {})), ["provision"], "roles.yaml: rolez: unknown key"),
    ("typo-key-suggests", mutate(lambda d: d["roles"]["app"].update(instnce_type="t3.small")), ["provision"],
     "roles.app.instnce_type: unknown key (did you mean 'instance_type'?)"),
    ("count-not-int", mutate(setitem(["roles", "app", "count"], "two")), ["provision"],
     "roles.yaml: roles.app.count: expected an integer"),
    ("port-out-of-range", mutate(setitem(["roles", "app", "ports"], [{"port": 70000, "from": "proxy"}])),
     ["provision"], "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got 70000"),
    ("port-is-string", mutate(setitem(["roles", "app", "ports"], [{"port": "http", "from": "proxy"}])),
     ["provision"], "roles.app.ports[0].port: expected an integer"),
    ("unknown-role-in-from", mutate(setitem(["roles", "db", "ports"], [{"port": 5432, "from": "ap"}])),
     ["provision"], "roles.yaml: roles.db.ports[0].from: unknown role 'ap'"),
    ("bad-cidr", mutate(setitem(["cluster", "admin_cidr"], "10.0.0.300/32")), ["provision"],
     "roles.yaml: cluster.admin_cidr:"),
    ("duplicate-role", DUPLICATE_ROLE, ["provision"], "duplicate key"),
    ("missing-app-repo", mutate(delitem(["app", "repo"])), ["provision"], "roles.yaml: app.repo: required"),
    ("repo-path-missing", mutate(setitem(["app", "repo"], "no/such/dir")), ["provision"], "app.repo"),
    ("bad-target", mutate(setitem(["cluster", "target"], "gcp")), ["provision"],
     "roles.yaml: cluster.target: expected one of"),
    ("bad-role-name", mutate(lambda d: d["roles"].update({"Web_1": d["roles"]["app"]})), ["provision"],
     "roles.Web_1: role names must match"),
    ("ssh-port-listed", mutate(setitem(["roles", "app", "ports"], [{"port": 22, "from": "0.0.0.0/0"}])),
     ["provision"], "roles.app.ports[0].port: port 22 is managed by whipup"),
    ("elastic-ip-not-bool", mutate(setitem(["roles", "proxy", "elastic_ip"], "yes please")), ["provision"],
     "roles.proxy.elastic_ip: expected true or false"),
    ("template-not-j2", mutate(setitem(["roles", "proxy", "templates"], [{"src": "etc/nginx/x.conf"}])),
     ["provision"], "roles.proxy.templates[0].src: expected a template name ending in .j2"),
    ("mode-not-string", mutate(setitem(["roles", "proxy", "templates"],
                                       [{"src": "etc/nginx/sites-available/whipup.conf.j2", "mode": 644}])),
     ["provision"], "roles.proxy.templates[0].mode"),
    ("bad-cluster-name", mutate(setitem(["cluster", "name"], "My Cluster!")), ["provision"], "cluster.name"),
    ("missing-template", mutate(setitem(["roles", "proxy", "templates"], [{"src": "etc/nginx/nope.conf.j2"}])),
     ["whip-up-full-system"], "roles.yaml: roles.proxy.templates[0].src: no such template"),
    ("template-undefined-variable", mutate(setitem(["configure"], {"templates_dir": "bad-templates"})),
     ["whip-up-full-system"], "etc/nginx/sites-available/whipup.conf.j2:2: 'no_such_setting' is undefined"),
    ("missing-config-file", None, ["provision", "--config", "nope.yaml"], "nope.yaml: cannot read"),
    ("unknown-target-flag", None, ["provision", "--target", "azure"], "--target: unknown target 'azure'"),
    ("aws-without-credentials", None, ["provision", "--target", "aws"], "no AWS credentials found"),
    ("create-node-unknown-role", None, ["create-node", "cache"], "unknown role 'cache'"),
    # flags, parsed and range-checked at the task boundary, before any host or API is contacted
    ("health-timeout-not-a-number", None, ["deploy", "--health-timeout", "abc"],
     "--health-timeout: expected seconds between 1 and 3600, got 'abc'"),
    ("health-timeout-zero", None, ["quick-update", "--yes", "--health-timeout", "0"],
     "--health-timeout: expected seconds between 1 and 3600, got '0'"),
    ("health-timeout-negative", None, ["rollback", "--health-timeout", "-5"],
     "--health-timeout: expected seconds between 1 and 3600"),
    ("history-not-a-count", None, ["releases", "--history", "many"],
     "--history: expected a count between 0 and 1000, got 'many'"),
]
SHIPPED_TEXT = (ROOT / "roles.yaml").read_text()


def text_with(old: str, new: str) -> str:
    """The shipped roles.yaml with `old` (present once) replaced: for what yaml.safe_dump cannot write."""
    assert SHIPPED_TEXT.count(old) == 1, old
    return SHIPPED_TEXT.replace(old, new)


def role_key(old: str, new: str):
    """The shipped file with role `old` renamed `new` (and every reference to it)."""
    def fn(data):
        data["roles"] = {new if k == old else k: v for k, v in data["roles"].items()}
        for role in data["roles"].values():
            for rule in role.get("ports", []):
                src = rule["from"]
                rule["from"] = [new if x == old else x for x in src] if isinstance(src, list) else (
                    new if src == old else src)
    return fn


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def alias_bomb() -> str:
    bomb = "[x, x, x, x, x, x, x, x, x, x]"
    for i in range(9):
        bomb = f"[&l{i} {bomb}" + f", *l{i}" * 9 + "]"
    return bomb


ssh_keys = {"public_key": "keys/latin1.pub", "private_key": "keys/ok"}

# Every string matched whole: a trailing newline, a space, a homoglyph, an invisible character.
WHOLE_STRINGS = [
    ("app-name-trailing-newline", mutate(setitem(["app", "name"], "demo\n")), ["provision"],
     "roles.yaml: app.name: expected a name of [a-z][a-z0-9_]*, got 'demo\\n'"),
    ("cluster-name-trailing-newline", mutate(setitem(["cluster", "name"], "whipup-demo\n")), ["provision"],
     "roles.yaml: cluster.name: expected a name of [a-z0-9-]"),
    ("role-name-trailing-newline", mutate(role_key("worker", "worker\n")), ["provision"],
     "roles.yaml: roles['worker\\n']: role names must match [a-z][a-z0-9-]*"),
    ("branch-newline-then-command", mutate(setitem(["app", "branch"], "main\n; rm -rf /")), ["provision"],
     "roles.yaml: app.branch: expected a git branch name, got 'main\\n; rm -rf /'"),
    ("package-with-a-space", mutate(setitem(["packages"], ["git", "curl wget"])), ["provision"],
     "roles.yaml: packages[1]: expected a Debian package name, got 'curl wget'"),
    ("app-name-unicode", mutate(setitem(["app", "name"], "d\u00e9mo")), ["provision"],
     "roles.yaml: app.name: expected a name of [a-z][a-z0-9_]*, got 'd\u00e9mo'"),
    ("instance-type-cyrillic-a", mutate(setitem(["roles", "app", "instance_type"], "t3.sm\u0430ll")), ["provision"],
     "roles.yaml: roles.app.instance_type: expected an instance type like t3.small"),
    ("service-trailing-newline", mutate(setitem(["roles", "proxy", "services"], ["nginx\n"])), ["provision"],
     "roles.yaml: roles.proxy.services[0]: expected a systemd service name, got 'nginx\\n'"),
    ("ami-name-bidi-override", mutate(setitem(["cluster", "ami"], {"name": "debian-12-\u202e*"})), ["provision"],
     "roles.yaml: cluster.ami.name: expected an image name pattern, got 'debian-12-\\u202e*': it holds a control"),
    ("ami-owner-arabic-digits", mutate(setitem(["cluster", "ami"], {"name": "x", "owner": "\u0661" * 12})),
     ["provision"], "roles.yaml: cluster.ami.owner: expected self, amazon, aws-marketplace or a 12-digit"),
    ("from-role-trailing-space", mutate(setitem(["roles", "app", "ports"], [{"port": 8000, "from": "proxy "}])),
     ["provision"], "roles.yaml: roles.app.ports[0].from: unknown role 'proxy '"),
]

# Names checked against the systems they become: Linux accounts, PostgreSQL, AWS and host names.
NAMES = [
    ("app-name-postgres", mutate(setitem(["app", "name"], "postgres")), ["provision"],
     "roles.yaml: app.name: 'postgres' is the PostgreSQL superuser's name; pick another"),
    ("app-name-is-the-ssh-user", mutate(setitem(["app", "name"], "admin")), ["provision"],
     "roles.yaml: app.name: 'admin' is cluster.ssh.user, the nodes' login user; pick another"),
    ("app-name-root", mutate(setitem(["app", "name"], "root")), ["provision"],
     "roles.yaml: app.name: 'root' is a system account on Debian and Ubuntu images"),
    ("app-name-redis", mutate(setitem(["app", "name"], "redis")), ["provision"],
     "roles.yaml: app.name: 'redis' is a system account"),
    ("app-name-sudo-group", mutate(setitem(["app", "name"], "sudo")), ["provision"],
     "roles.yaml: app.name: 'sudo' is a system group"),
    ("app-name-pg-prefix", mutate(setitem(["app", "name"], "pg_demo")), ["provision"],
     "roles.yaml: app.name: 'pg_demo': PostgreSQL reserves role names starting with pg_"),
    ("app-name-pg-hba-all", mutate(setitem(["app", "name"], "all")), ["provision"],
     "roles.yaml: app.name: 'all' is pg_hba.conf's word for every database and every user"),
    ("app-name-too-long-for-useradd", mutate(setitem(["app", "name"], "a" * 33)), ["provision"],
     "roles.yaml: app.name: 'aaaaaaaaaaaaaaaaaaaa'... is 33 characters; it names the app's Linux user and group, "
     "and useradd allows 32"),
    ("role-name-too-long-for-a-host-name", mutate(role_key("worker", "w" * 49)), ["provision"],
     f"roles.yaml: roles.{'w' * 49}: node names <cluster>-<role>-<index> are host names of at most 63 characters"),
    ("cluster-name-sg-prefix", mutate(setitem(["cluster", "name"], "sg-demo")), ["provision"],
     "roles.yaml: cluster.name: 'sg-demo': security group names <cluster>-<role> may not start with 'sg-'"),
]

# Paths expanded or refused, never taken literally.
PATHS = [
    ("state-dir-env-var", mutate(setitem(["cluster", "state_dir"], "$HOME/.whipup")), ["provision"],
     "roles.yaml: cluster.state_dir: '$HOME/.whipup' names an environment variable, which whipup does not expand"),
    ("key-path-env-var", mutate(setitem(["cluster", "ssh"], {"public_key": "${KEYS}/id.pub", "private_key": "k"})),
     ["provision"], "roles.yaml: cluster.ssh.public_key: '${KEYS}/id.pub' names an environment variable"),
    ("state-dir-unknown-user", mutate(setitem(["cluster", "state_dir"], "~no-such-user-whipup/state")),
     ["provision"], "roles.yaml: cluster.state_dir: cannot expand '~no-such-user-whipup'"),
    ("state-dir-is-tmp", mutate(setitem(["cluster", "state_dir"], "/tmp")), ["provision"],
     "roles.yaml: cluster.state_dir: /tmp is a shared directory, and whipup makes its state dir 0700"),
    ("state-dir-is-root", mutate(setitem(["cluster", "state_dir"], "/")), ["provision"],
     "roles.yaml: cluster.state_dir: / is a system or home directory"),
    ("repo-env-var", mutate(setitem(["app", "repo"], "$SRC/demo")), ["provision"],
     "roles.yaml: app.repo: '$SRC/demo' names an environment variable"),
    ("requirements-tilde", mutate(setitem(["app", "requirements"], "~/requirements.txt")), ["provision"],
     "roles.yaml: app.requirements: expected a path inside the project"),
]

# Openings to the whole internet need `public: true`.
PUBLIC = [
    ("db-open-to-the-world", mutate(setitem(["roles", "db", "ports"], [{"port": 5432, "from": "0.0.0.0/0"}])),
     ["provision"], "roles.yaml: roles.db.ports[0].from: port 5432 would be open to 0.0.0.0/0, the whole internet; "
     "if that is meant, say so with public: true in this rule (roles.db.ports[0].public: true)"),
    ("broker-open-to-ipv6-world", mutate(setitem(["roles", "worker", "ports"],
                                                 [{"port": 6379, "from": ["app", "worker", "::/0"]}])),
     ["provision"], "roles.yaml: roles.worker.ports[0].from[2]: port 6379 would be open to ::/0"),
    ("app-port-open-to-the-world", mutate(setitem(["roles", "app", "ports"], [{"port": 8000, "from": "0.0.0.0/0"}])),
     ["whip-up-full-system"], "roles.yaml: roles.app.ports[0].from: port 8000 would be open to 0.0.0.0/0"),
    ("ssh-open-to-the-world", mutate(setitem(["cluster", "admin_cidr"], "0.0.0.0/0")), ["provision"],
     "roles.yaml: cluster.admin_cidr: 0.0.0.0/0 opens SSH (port 22) on every node to the whole internet"),
    ("public-where-nothing-is-public", mutate(setitem(["roles", "db", "ports"],
                                                      [{"port": 5432, "from": "app", "public": True}])),
     ["provision"], "roles.yaml: roles.db.ports[0].public: true, but the rule is not open to 0.0.0.0/0 or ::/0"),
    ("public-not-a-boolean", mutate(setitem(["roles", "db", "ports"],
                                            [{"port": 5432, "from": "0.0.0.0/0", "public": "yes"}])),
     ["provision"], "roles.yaml: roles.db.ports[0].public: expected true or false, got 'yes'"),
]

# Counts: nothing to launch, out of range, not an integer.
COUNTS = [
    ("count-zero-on-every-role", mutate(lambda d: [r.update(count=0) for r in d["roles"].values()]), ["provision"],
     "roles.yaml: roles: every role has count 0: nothing would be launched"),
    ("count-above-the-limit", mutate(setitem(["roles", "app", "count"], 51)), ["provision"],
     "roles.yaml: roles.app.count: expected an integer 0-50, got 51"),
    ("count-a-fraction", mutate(setitem(["roles", "app", "count"], 1.5)), ["provision"],
     "roles.yaml: roles.app.count: expected an integer 0-50, got 1.5"),
    ("count-a-boolean", mutate(setitem(["roles", "app", "count"], True)), ["provision"],
     "roles.yaml: roles.app.count: expected an integer 0-50, got True"),
]

# Text that is not UTF-8: roles.yaml, a key file it names, a template.
ENCODINGS = [
    ("latin-1", SHIPPED_TEXT.replace("Jinja2 templates", "Jinja2 mod\u00e8les").encode("latin-1"), ["provision"],
     "roles.yaml: not UTF-8 text (byte 0xe8 at offset "),
    ("utf-16-with-bom", SHIPPED_TEXT.encode("utf-16"), ["provision"],
     "roles.yaml: UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8"),
    ("utf-16-without-bom", SHIPPED_TEXT.encode("utf-16-le"), ["status"],
     "roles.yaml: not UTF-8 text (a NUL byte at offset 1: UTF-16 without a byte order mark"),
    ("utf-32", SHIPPED_TEXT.encode("utf-32"), ["provision"], "roles.yaml: UTF-32 text"),
    ("public-key-latin-1", mutate(setitem(["cluster", "ssh"], ssh_keys)), ["provision"],
     "roles.yaml: cluster.ssh.public_key: "),
    ("template-latin-1", mutate(setitem(["configure"], {"templates_dir": "latin1-templates"})),
     ["whip-up-full-system"], "latin1-templates/etc/nginx/sites-available/whipup.conf.j2: not UTF-8 text (byte 0xe9"),
]

# YAML that is well-formed-looking but unbuildable, pathological or broken.
YAML_SHAPES = [
    ("february-30th", text_with("  keep_releases: 5\n", "  keep_releases: 2001-02-30\n"), ["provision"],
     "roles.yaml: not valid YAML: cannot read '2001-02-30': day is out of range for month at line"),
    ("a-5000-digit-integer", text_with("  keep_releases: 5\n", "  keep_releases: " + "9" * 5000 + "\n"),
     ["provision"], "roles.yaml: not valid YAML: cannot read '9999"),
    ("nested-too-deeply", "cluster: " + nested(5000) + "\n", ["provision"], "roles.yaml: not valid YAML: nested too deeply"),
    ("control-character", text_with("name: whipup-demo ", "name: whipup-demo\x01"), ["provision"],
     "roles.yaml: not valid YAML: character U+0001 is not allowed, at line"),
    ("alias-bomb", text_with("  keep_releases: 5\n", f"  keep_releases: {alias_bomb()}\n"), ["provision"],
     "roles.yaml: app.keep_releases: expected an integer 1-100, got a list"),
    ("recursive-alias", text_with("  keep_releases: 5\n", "  keep_releases: &x [*x]\n"), ["provision"],
     "roles.yaml: app.keep_releases: expected an integer 1-100, got a list"),
    ("two-documents", SHIPPED_TEXT + "---\ncluster: {name: other}\n", ["provision"],
     "roles.yaml: not valid YAML: but found another document at line"),
    ("python-tag", text_with("  keep_releases: 5\n", "  keep_releases: !!python/object/apply:os.system [id]\n"),
     ["provision"], "roles.yaml: not valid YAML: could not determine a constructor for the tag"),
    ("duplicate-key-nested-deep", text_with("{port: 5432, from: [app, worker]}",
                                            "{port: 5432, port: 5433, from: [app, worker]}"), ["provision"],
     "roles.yaml: roles.db.ports[0].port: duplicate key"),
    ("truncated-file", SHIPPED_TEXT[: SHIPPED_TEXT.index("\nroles:")], ["provision"], "roles.yaml: roles: required"),
    ("tab-indentation", text_with("  region: us-east-1\n", "\tregion: us-east-1\n"), ["provision"],
     "roles.yaml: not valid YAML: found character '\\t' that cannot start any token at line"),
]

# Wrong types and shapes, unknown keys deep down, values out of range, CIDRs that are not networks.
TYPES = [
    ("unknown-key-nested-deep", mutate(lambda d: d["roles"]["db"]["templates"][1].update(ownr="postgres")),
     ["provision"], "roles.yaml: roles.db.templates[1].ownr: unknown key (did you mean 'owner'?)"),
    ("list-where-a-mapping-is-expected", mutate(setitem(["cluster"], ["whipup-demo"])), ["provision"],
     "roles.yaml: cluster: expected a mapping, got a list"),
    ("mapping-where-a-list-is-expected", mutate(setitem(["roles", "app", "ports"], {"port": 8000, "from": "proxy"})),
     ["provision"], "roles.yaml: roles.app.ports: expected a list, got a mapping"),
    ("port-rule-is-a-string", mutate(setitem(["roles", "app", "ports"], ["8000"])), ["provision"],
     "roles.yaml: roles.app.ports[0]: expected a mapping, got a string"),
    ("empty-repo", mutate(setitem(["app", "repo"], "")), ["provision"],
     "roles.yaml: app.repo: expected a local path or a git URL, got an empty string"),
    ("cluster-name-null", mutate(setitem(["cluster", "name"], None)), ["provision"], "roles.yaml: cluster.name: required"),
    ("role-is-null", mutate(setitem(["roles", "worker"], None)), ["provision"],
     "roles.yaml: roles.worker: expected a mapping, got null"),
    ("root-volume-zero", mutate(setitem(["roles", "db", "root_volume_gb"], 0)), ["provision"],
     "roles.yaml: roles.db.root_volume_gb: expected an integer 1-16384, got 0"),
    ("keep-releases-a-string", mutate(setitem(["app", "keep_releases"], "5")), ["provision"],
     "roles.yaml: app.keep_releases: expected an integer 1-100, got '5'"),
    ("port-a-fraction", mutate(setitem(["roles", "app", "ports"], [{"port": 80.5, "from": "proxy"}])), ["provision"],
     "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got 80.5"),
    ("cidr-with-host-bits", mutate(setitem(["cluster", "admin_cidr"], "10.0.0.1/8")), ["provision"],
     "roles.yaml: cluster.admin_cidr: not a valid CIDR: 10.0.0.1/8 has host bits set"),
    ("cidr-prefix-too-long", mutate(setitem(["roles", "proxy", "ports"], [{"port": 80, "from": "10.0.0.0/33"}])),
     ["provision"], "roles.yaml: roles.proxy.ports[0].from: not a valid CIDR"),
    ("cidr-with-a-scope-id", mutate(setitem(["cluster", "admin_cidr"], "fe80::1%eth0/128")), ["provision"],
     "roles.yaml: cluster.admin_cidr: not a valid CIDR: 'fe80::1%eth0/128' has a scope id"),
    ("template-dest-relative", mutate(lambda d: d["roles"]["db"]["templates"][0].update(dest="etc/x.conf")),
     ["provision"], "roles.yaml: roles.db.templates[0].dest: expected an absolute path without '..', got 'etc/x.conf'"),
    ("template-dest-dotdot", mutate(lambda d: d["roles"]["db"]["templates"][0].update(dest="/etc/../x")),
     ["provision"], "roles.yaml: roles.db.templates[0].dest: expected an absolute path without '..'"),
    ("mode-not-octal", mutate(lambda d: d["roles"]["db"]["templates"][1].update(mode="0999")), ["provision"],
     "roles.yaml: roles.db.templates[1].mode: expected a quoted octal string like '0644', got '0999'"),
    ("top-level-key-not-a-string", SHIPPED_TEXT + "1: x\n", ["provision"], "roles.yaml: keys must be strings, got 1"),
    ("region-with-underscores", mutate(setitem(["cluster", "region"], "us_east_1")), ["provision"],
     "roles.yaml: cluster.region: expected a region like us-east-1, got 'us_east_1'"),
]

CLASSES = {"original": CASES, "whole strings": WHOLE_STRINGS, "names": NAMES, "paths": PATHS, "public": PUBLIC,
           "counts": COUNTS, "encodings": ENCODINGS, "yaml shapes": YAML_SHAPES, "types": TYPES}
CASES = [case for cases in CLASSES.values() for case in cases]


def prepare(tmp: Path, text: str | bytes | None) -> None:
    """tmp as a project: roles.yaml (`text`, or the shipped one), the example app, templates and their broken
    copies, and key files."""
    data = text if text is not None else (ROOT / "roles.yaml").read_text()
    (tmp / "roles.yaml").write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    (tmp / "examples").symlink_to(ROOT / "examples")
    (tmp / "templates").symlink_to(ROOT / "templates")
    bad = tmp / "bad-templates"  # a copy of templates/ with an undefined variable on line 2 of one
    shutil.copytree(ROOT / "templates", bad)
    site = bad / "etc/nginx/sites-available/whipup.conf.j2"
    lines = site.read_text().splitlines(True)
    site.write_text(lines[0] + "# {{ no_such_setting }}\n" + "".join(lines[1:]))
    latin1 = tmp / "latin1-templates"  # a copy with a Latin-1 byte on line 2 of the same one
    shutil.copytree(ROOT / "templates", latin1)
    (latin1 / "etc/nginx/sites-available/whipup.conf.j2").write_bytes(
        (lines[0] + "# caf\u00e9\n" + "".join(lines[1:])).encode("latin-1"))
    (tmp / "keys").mkdir()
    (tmp / "keys" / "latin1.pub").write_bytes(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 caf\xe9@host\n")
    (tmp / "keys" / "ok").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")


def run_case(tmp: Path, case) -> tuple[subprocess.CompletedProcess, list[str]]:
    """One case, with a recorder of its own: (the fab process, the requests that reached the recorder)."""
    _, text, args, _ = case
    prepare(tmp, text)
    with recording() as (port, seen):
        return run_fab(tmp, port, *args), list(seen)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Every selected case run up front, a few `fab` processes at a time (each is ~0.4 s of interpreter start)."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.originalname == "test_bad_input_is_refused_before_any_api_call"]
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        futures = {case[0]: pool.submit(run_case, tmp_path_factory.mktemp(case[0]), case) for case in selected}
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_api_call(outcomes, case):
    name, _, _, message = case
    p, seen = outcomes[name]
    assert p.returncode != 0, f"{name}: exit 0\n{p.stdout}\n{p.stderr}"
    assert message in p.stderr, f"{name}: stderr does not say {message!r}:\n{p.stderr}"
    assert "Traceback" not in p.stderr + p.stdout, f"{name}: a traceback instead of an error message:\n{p.stderr}"
    assert seen == [], f"{name}: made API calls {seen}"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    assert all(len(cases) >= 4 for cases in CLASSES.values())
