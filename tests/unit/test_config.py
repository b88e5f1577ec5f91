"""roles.yaml loading: the shipped file, and one test per kind of error."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabfile.config import (
    AUTO_AMI,
    AmiSpec,
    ConfigError,
    PortRule,
    TemplateSpec,
    load_config,
    with_target,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "roles.yaml"


def minimal() -> dict:
    return {
        "cluster": {"name": "t"},
        "app": {"name": "demo", "repo": "src"},
        "roles": {
            "app": {"instance_type": "t3.small", "ports": [{"port": 8000, "from": "proxy"}]},
            "proxy": {"instance_type": "t3.micro", "ports": [{"port": 80, "from": "0.0.0.0/0"}]},
        },
    }


def write(tmp_path: Path, data) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)  # minimal()'s app.repo
    path = tmp_path / "roles.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_of(tmp_path: Path, data) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return str(info.value)


def test_shipped_roles_yaml_loads_with_its_defaults():
    cfg = load_config(SHIPPED)
    assert cfg.root == REPO
    assert cfg.cluster.name == "whipup-demo"
    assert cfg.cluster.target == "sandbox"
    assert cfg.cluster.admin_cidr == "10.255.255.254/32"
    assert cfg.cluster.ami == AUTO_AMI and cfg.cluster.ami.unresolved
    assert cfg.cluster.state_dir == REPO / ".whipup"
    assert cfg.cluster.ssh.user == "admin" and cfg.cluster.ssh.connect == "auto"
    assert cfg.app.repo_path == REPO / "examples" / "demo"
    assert cfg.packages == ("git", "supervisor", "python3-venv", "curl")
    assert cfg.role_names == ("proxy", "app", "db", "worker", "monitor")
    proxy = cfg.role("proxy")
    assert proxy.elastic_ip and proxy.instance_type == "t3.micro"
    assert proxy.ports == (PortRule(80, ("0.0.0.0/0",), ()), PortRule(443, ("0.0.0.0/0",), ()))
    assert proxy.templates == (TemplateSpec(
        src="etc/nginx/sites-available/whipup.conf.j2", dest="/etc/nginx/sites-available/whipup.conf",
        notify="nginx", action="reload", owner="root", mode="0644"),)
    db = cfg.role("db")
    assert db.termination_protection and db.root_volume_gb == 20
    assert db.ports == (PortRule(5432, (), ("app", "worker")),)
    assert [t.action for t in db.templates] == ["restart", "reload"]
    assert cfg.role("worker").services == ("supervisor", "redis-server")
    assert cfg.role("app").ports == (PortRule(8000, (), ("proxy",)),)


def test_defaults_and_overrides(tmp_path):
    data = minimal()
    data["roles"]["app"]["ami"] = {"id": "ami-0123456789abcdef0"}
    data["roles"]["app"]["templates"] = [{"src": "a/b.conf.j2", "dest": "/srv/b.conf", "mode": "600"}]
    data["roles"]["app"]["services"] = ["x"]
    cfg = load_config(write(tmp_path, data))
    app = cfg.role("app")
    assert app.count == 1 and app.root_volume_gb == 8 and not app.elastic_ip
    assert app.ami == AmiSpec(id="ami-0123456789abcdef0")
    assert cfg.role("proxy").ami == cfg.cluster.ami
    assert app.templates[0] == TemplateSpec("a/b.conf.j2", "/srv/b.conf", None, "restart", "root", "0600")
    assert cfg.app.django_settings is None and cfg.app.requirements is None   # detected from the repository
    assert cfg.app.health_path == "/-/health" and cfg.app.overlay and cfg.app.media == "s3"
    assert cfg.app.repo_path == tmp_path / "src"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["roles"]["app"]["ports"][0].update({"from": "ap"}),
         "roles.yaml: roles.app.ports[0].from: unknown role 'ap' (roles: app, proxy)"),
        (lambda d: d["roles"]["app"]["ports"][0].update({"from": ["proxy", "wrker"]}),
         "roles.yaml: roles.app.ports[0].from[1]: unknown role 'wrker'"),
        (lambda d: d["roles"]["app"]["ports"][0].update({"port": 70000}),
         "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got 70000"),
        (lambda d: d["roles"]["app"]["ports"][0].update({"port": "80"}),
         "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got '80'"),
        (lambda d: d["roles"]["app"]["ports"][0].update({"port": True}),
         "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got True"),
        (lambda d: d["roles"]["app"]["ports"][0].update({"port": 22}),
         "roles.yaml: roles.app.ports[0].port: port 22 is managed by whipup"),
        (lambda d: d["roles"]["app"].update({"instnce_type": "t3.small"}),
         "roles.yaml: roles.app.instnce_type: unknown key (did you mean 'instance_type'?)"),
        (lambda d: d["cluster"].update({"zzz": 1}),
         "roles.yaml: cluster.zzz: unknown key (expected one of: name, region"),
        (lambda d: d["app"].pop("repo"),
         "roles.yaml: app.repo: required"),
        (lambda d: d["roles"]["app"].update({"count": -1}),
         "roles.yaml: roles.app.count: expected an integer 0-50, got -1"),
        (lambda d: d["roles"]["app"].update({"elastic_ip": "yes please"}),
         "roles.yaml: roles.app.elastic_ip: expected true or false, got 'yes please'"),
        (lambda d: d["roles"]["app"].update({"packages": "nginx"}),
         "roles.yaml: roles.app.packages: expected a list, got a string"),
        (lambda d: d["roles"]["app"].update({"packages": ["x; whoami"]}),
         "roles.yaml: roles.app.packages[0]: expected a Debian package name, got 'x; whoami'"),
        (lambda d: d["roles"].update({"Bad_Role": {"instance_type": "t3.micro"}}),
         "roles.yaml: roles.Bad_Role: role names must match [a-z][a-z0-9-]*"),
        (lambda d: d["cluster"].update({"name": "Whip Up"}),
         "roles.yaml: cluster.name: expected a name of [a-z0-9-]"),
        (lambda d: d["cluster"].update({"target": "gcp"}),
         "roles.yaml: cluster.target: expected one of sandbox, aws, got 'gcp'"),
        (lambda d: d["cluster"].update({"admin_cidr": "10.0.0.1/8"}),
         "roles.yaml: cluster.admin_cidr: not a valid CIDR"),
        (lambda d: d["cluster"].update({"admin_cidr": "10.0.0.1"}),
         "roles.yaml: cluster.admin_cidr: expected a CIDR like 203.0.113.7/32, got '10.0.0.1'"),
        (lambda d: d["cluster"].update({"ssh": {"public_key": "k.pub"}}),
         "roles.yaml: cluster.ssh.private_key: required when public_key is set"),
        (lambda d: d["cluster"].update({"ssh": {"public_key": "k.pub", "private_key": "k"}}),
         "roles.yaml: cluster.ssh.public_key: file not found:"),
        (lambda d: d["cluster"].update({"ssh": {"connect": "wifi"}}),
         "roles.yaml: cluster.ssh.connect: expected one of auto, public, private, got 'wifi'"),
        (lambda d: d["cluster"].update({"ami": {"id": "ami-0123456789abcdef0", "name": "x"}}),
         "roles.yaml: cluster.ami: give either id, or name (with owner), not both"),
        (lambda d: d["cluster"].update({"vpc": "my-vpc"}),
         "roles.yaml: cluster.vpc: expected 'default' or a vpc id"),
        (lambda d: d["app"].update({"strategy": "git"}),
         "roles.yaml: app.repo: strategy git needs a git URL"),
        (lambda d: d["app"].update({"strategy": "git", "repo": "https://bob:hunter2@example.org/app.git"}),
         "roles.yaml: app.repo: a password or token in the URL would be on the hosts' command lines"),
        (lambda d: d["app"].update({"strategy": "git", "repo": "https://ghp_TOKEN@github.com/o/app.git"}),
         "roles.yaml: app.repo: a password or token in the URL"),
        (lambda d: d["app"].update({"strategy": "git", "repo": "ssh://git:pw@example.org/app.git"}),
         "roles.yaml: app.repo: a password or token in the URL"),
        (lambda d: d["app"].update({"keep_releases": 0}),
         "roles.yaml: app.keep_releases: expected an integer 1-100, got 0"),
        (lambda d: d["roles"]["app"].update({"templates": [{"src": "a.conf"}]}),
         "roles.yaml: roles.app.templates[0].src: expected a template name ending in .j2"),
        (lambda d: d["roles"]["app"].update({"templates": [{"src": "../a.j2"}]}),
         "roles.yaml: roles.app.templates[0].src: expected a path inside the project"),
        (lambda d: d["roles"]["app"].update({"templates": [{"src": "a.j2", "notify": "nginx"}]}),
         "roles.yaml: roles.app.templates[0].notify: 'nginx' is not one of this role's services"),
        (lambda d: d["roles"]["app"].update({"templates": [{"src": "a.j2", "mode": 420}]}),
         "roles.yaml: roles.app.templates[0].mode: expected a quoted octal string like '0644', got 420"),
        (lambda d: d["roles"]["app"].update({"templates": [{"src": "a.j2", "action": "bounce"}]}),
         "roles.yaml: roles.app.templates[0].action: expected one of reload, restart, got 'bounce'"),
        (lambda d: d["roles"]["app"].pop("instance_type"),
         "roles.yaml: roles.app.instance_type: required"),
        (lambda d: d.update({"roles": {}}),
         "roles.yaml: roles: expected a mapping of role names to roles"),
    ],
)
def test_errors_name_file_and_key_path(tmp_path, mutate, expected):
    data = minimal()
    mutate(data)
    assert error_of(tmp_path, data).startswith(expected)


def test_not_valid_yaml_names_the_line(tmp_path):
    message = error_of(tmp_path, "cluster:\n  name: t\napp: [unclosed\nroles: {}\n")
    assert message.startswith("roles.yaml: not valid YAML: ")
    assert message.endswith("line 4")


def test_duplicate_role_is_an_error(tmp_path):
    text = (
        "cluster: {name: t}\n"
        "app: {name: demo, repo: src}\n"
        "roles:\n"
        "  app:\n"
        "    instance_type: t3.small\n"
        "  app:\n"
        "    instance_type: t3.large\n"
    )
    assert error_of(tmp_path, text) == "roles.yaml: roles.app: duplicate key (lines 4 and 6)"


def test_empty_file(tmp_path):
    assert error_of(tmp_path, "").startswith("roles.yaml: empty file")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_ssh_key_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k.pub").write_text("ssh-ed25519 AAAA x\n")
    (tmp_path / "keys" / "k").write_text("private\n")
    data = minimal()
    data["cluster"]["ssh"] = {"public_key": "keys/k.pub", "private_key": "keys/k", "user": "ubuntu"}
    ssh = load_config(write(tmp_path, data)).cluster.ssh
    assert (ssh.public_key, ssh.private_key, ssh.user) == (tmp_path / "keys/k.pub", tmp_path / "keys/k", "ubuntu")


def test_role_lookup_lists_roles():
    cfg = load_config(SHIPPED)
    with pytest.raises(ConfigError) as info:
        cfg.role("x")
    assert str(info.value) == "unknown role 'x' (roles: app, db, monitor, proxy, worker)"


def test_with_target_overrides_and_validates():
    cfg = load_config(SHIPPED)
    assert with_target(cfg, "aws").cluster.target == "aws"
    assert with_target(cfg, None) is cfg
    with pytest.raises(ConfigError, match=r"^--target: unknown target 'gcp'"):
        with_target(cfg, "gcp")


def test_push_repo_must_be_an_existing_directory(tmp_path):
    data = minimal()
    data["app"]["repo"] = "missing/app"
    assert error_of(tmp_path, data) == (
        f"roles.yaml: app.repo: strategy push needs a local directory, and {tmp_path}/missing/app is not one")


def test_check_templates_names_the_missing_one(roles_file):
    from fabfile.config import check_templates

    cfg = load_config(roles_file)
    (roles_file.parent / "templates").symlink_to(REPO / "templates")
    check_templates(cfg)
    text = roles_file.read_text().replace("etc/nginx/sites-available/whipup.conf.j2", "etc/nginx/typo.conf.j2")
    roles_file.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_templates(load_config(roles_file))
    assert str(info.value) == (f"roles.yaml: roles.proxy.templates[0].src: no such template: "
                               f"{roles_file.parent}/templates/etc/nginx/typo.conf.j2")


# --- text: UTF-8, whole strings, values Python cannot build --------------------------------

def test_latin1_names_the_byte_and_its_offset(tmp_path):
    text = yaml.safe_dump(minimal(), sort_keys=False).replace("name: t", "name: caf\u00e9")
    path = write(tmp_path, "")
    path.write_bytes(text.encode("latin-1"))
    offset = text.index("\u00e9")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"roles.yaml: not UTF-8 text (byte 0xe9 at offset {offset}): save it as UTF-8"


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-16-be", None), ("utf-32", "UTF-32")])
def test_utf16_and_utf32_are_named(tmp_path, encoding, name):
    path = write(tmp_path, "")
    data = yaml.safe_dump(minimal()).encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
        name = "UTF-16"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"roles.yaml: {name} text (it starts with a {name} byte order mark): "
                               f"save it as UTF-8")


def test_utf16_without_a_byte_order_mark_is_not_utf8_either(tmp_path):
    path = write(tmp_path, "")
    path.write_bytes(yaml.safe_dump(minimal()).encode("utf-16-le"))
    with pytest.raises(ConfigError, match=r"^roles\.yaml: not UTF-8 text \(a NUL byte at offset 1: UTF-16 without"):
        load_config(path)


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = write(tmp_path, "")
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(minimal()).encode())
    assert load_config(path).cluster.name == "t"


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["app"].update(name="demo\n"), "roles.yaml: app.name: expected a name of [a-z][a-z0-9_]*, got 'demo\\n'"),
    (lambda d: d["cluster"].update(name="t\n"), "roles.yaml: cluster.name: expected a name of [a-z0-9-]"),
    (lambda d: d["app"].update(branch="main\n"), "roles.yaml: app.branch: expected a git branch name, got 'main\\n'"),
    (lambda d: d["roles"]["app"].update(instance_type="t3.small\n"), "roles.yaml: roles.app.instance_type:"),
    (lambda d: d["roles"]["app"].update(services=["nginx\n"]), "roles.yaml: roles.app.services[0]:"),
    (lambda d: d["cluster"].update(ami={"name": "debian-\u202e*"}),
     "roles.yaml: cluster.ami.name: expected an image name pattern, got 'debian-\\u202e*': it holds a control or "
     "invisible character (U+202E) at position 7"),
    (lambda d: d["cluster"].update(ami={"name": "debian\x00"}), "roles.yaml: cluster.ami.name: expected an image"),
    (lambda d: d["cluster"].update(ami={"name": "\ud800"}), "roles.yaml: cluster.ami.name: expected an image name "
     "pattern, got '\\ud800': it holds a lone surrogate (U+D800) at position 0"),
    (lambda d: d["cluster"].update(name=""), "roles.yaml: cluster.name: expected a name of [a-z0-9-] (1-40 "
     "characters, no leading or trailing '-'), got an empty string"),
    (lambda d: d["cluster"].update(admin_cidr="fe80::1%eth0/128"), "roles.yaml: cluster.admin_cidr: not a valid CIDR: "
     "'fe80::1%eth0/128' has a scope id"),
    (lambda d: d["cluster"].update({"a b": 1}), "roles.yaml: cluster['a b']: unknown key"),
    (lambda d: d["roles"]["app"]["ports"][0].update({"from": ["proxy", "proxy\n"]}),
     "roles.yaml: roles.app.ports[0].from[1]: unknown role 'proxy\\n'"),
])
def test_every_string_is_matched_whole(tmp_path, mutate, expected):
    data = minimal()
    mutate(data)
    assert error_of(tmp_path, data).startswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("cluster: {name: t}\napp: {name: demo, repo: src}\nroles: {app: {instance_type: t3.small, count: 2001-02-30}}\n",
     "roles.yaml: not valid YAML: cannot read '2001-02-30': day is out of range for month at line 3"),
    ("cluster: {name: t}\napp: {name: demo, repo: src}\nroles: {app: {instance_type: t3.small, count: "
     + "1" * 5000 + "}}\n", "roles.yaml: not valid YAML: cannot read '1111"),
    ("cluster: {name: t}\napp: {name: demo, repo: src}\nroles: {app: {instance_type: t3.small, count: !!float x}}\n",
     "roles.yaml: not valid YAML: cannot read 'x': could not convert string to float: 'x' at line 3"),
    ("cluster: " + "[" * 5000 + "]" * 5000 + "\n", "roles.yaml: not valid YAML: nested too deeply"),
    ("cluster: {name: t\x01}\n", "roles.yaml: not valid YAML: character U+0001 is not allowed, at line 1"),
    ("a: &a [*a, *a]\nb: &b [*a, *a]\nc: &c [*b, *b]\ncluster: {name: t}\napp: {name: demo, repo: src}\n"
     "roles: {app: {instance_type: t3.small, count: *c}}\n",
     "roles.yaml: a: unknown key"),
    ("cluster: {name: t}\napp: {name: demo, repo: src}\nroles: {app: {instance_type: t3.small, count: &x [*x]}}\n",
     "roles.yaml: roles.app.count: expected an integer 0-50, got a list"),
])
def test_yaml_that_python_cannot_build_is_an_error_not_a_traceback(tmp_path, text, expected):
    assert error_of(tmp_path, text).startswith(expected)


def test_an_alias_bomb_is_described_not_printed(tmp_path):
    """count: a list of 10**9 x's by aliases: printing it would never end; the message names its type."""
    bomb = "[x, x, x, x, x, x, x, x, x, x]"
    for i in range(9):
        bomb = f"[&l{i} {bomb}" + f", *l{i}" * 9 + "]"
    for key in ("count", "elastic_ip", "instance_type"):
        text = f"cluster: {{name: t}}\napp: {{name: demo, repo: src}}\nroles: {{app: {{instance_type: t3.small, {key}: {bomb}}}}}\n"
        text = text.replace("instance_type: t3.small, instance_type", "instance_type")
        message = error_of(tmp_path, text)
        assert message.startswith(f"roles.yaml: roles.app.{key}: expected ") and message.endswith("got a list")


@pytest.mark.parametrize("content, expected", [
    (b"ssh-ed25519 AAAA caf\xe9\n", "roles.yaml: cluster.ssh.public_key: {p}: not UTF-8 text (byte 0xe9 at offset "
     "20): save it as UTF-8"),
    (b"\xff\xfes\x00s\x00h\x00", "roles.yaml: cluster.ssh.public_key: {p}: UTF-16 text"),
])
def test_a_public_key_file_must_be_utf8(tmp_path, content, expected):
    (tmp_path / "k.pub").write_bytes(content)
    (tmp_path / "k").write_text("private\n")
    data = minimal()
    data["cluster"]["ssh"] = {"public_key": "k.pub", "private_key": "k"}
    assert error_of(tmp_path, data) == expected.format(p=tmp_path / "k.pub") or \
        error_of(tmp_path, data).startswith(expected.format(p=tmp_path / "k.pub"))


def test_a_private_key_file_must_be_utf8(tmp_path):
    (tmp_path / "k.pub").write_text("ssh-ed25519 AAAA me\n")
    (tmp_path / "k").write_bytes(b"\x80private\n")
    data = minimal()
    data["cluster"]["ssh"] = {"public_key": "k.pub", "private_key": "k"}
    assert error_of(tmp_path, data) == (f"roles.yaml: cluster.ssh.private_key: {tmp_path / 'k'}: not UTF-8 text "
                                        f"(byte 0x80 at offset 0): save it as UTF-8")


# --- paths on this machine: ~ expanded, $VAR refused ---------------------------------------

def test_a_leading_tilde_is_the_home_directory(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "k.pub").write_text("ssh-ed25519 AAAA me\n")
    (home / "keys" / "k").write_text("private\n")
    (home / "app").mkdir()
    monkeypatch.setenv("HOME", str(home))
    data = minimal()
    data["cluster"].update(state_dir="~/.whipup", ssh={"public_key": "~/keys/k.pub", "private_key": "~/keys/k"})
    data["app"]["repo"] = "~/app"
    data["configure"] = {"templates_dir": "~/tpl"}
    cfg = load_config(write(tmp_path, data))
    assert cfg.cluster.state_dir == home / ".whipup"
    assert (cfg.cluster.ssh.public_key, cfg.cluster.ssh.private_key) == (home / "keys/k.pub", home / "keys/k")
    assert cfg.app.repo_path == home / "app"
    assert cfg.configure.templates_dir == home / "tpl"
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("key, value, expected", [
    ("state_dir", "$HOME/.whipup", "roles.yaml: cluster.state_dir: '$HOME/.whipup' names an environment variable, "
     "which whipup does not expand: write the path out (a leading ~ is expanded)"),
    ("state_dir", "${XDG_STATE_HOME}/w", "roles.yaml: cluster.state_dir: '${XDG_STATE_HOME}/w' names an environment"),
    ("state_dir", "~no-such-user-here/w", "roles.yaml: cluster.state_dir: cannot expand '~no-such-user-here' in "
     "'~no-such-user-here/w': no such user, or no home directory"),
    ("repo", "$SRC/app", "roles.yaml: app.repo: '$SRC/app' names an environment variable"),
    ("requirements", "~/req.txt", "roles.yaml: app.requirements: expected a path inside the project"),
    ("templates_dir", "$T", "roles.yaml: configure.templates_dir: '$T' names an environment variable"),
])
def test_environment_variables_are_refused(tmp_path, key, value, expected):
    data = minimal()
    section = {"state_dir": "cluster", "repo": "app", "requirements": "app", "templates_dir": "configure"}[key]
    data.setdefault(section, {})[key] = value
    assert error_of(tmp_path, data) == expected or error_of(tmp_path, data).startswith(expected)


def test_a_dollar_that_is_not_a_variable_is_a_plain_character(tmp_path):
    data = minimal()
    data["cluster"]["state_dir"] = "state$"
    assert load_config(write(tmp_path, data)).cluster.state_dir == tmp_path / "state$"


@pytest.mark.parametrize("state_dir", ["/", "/tmp", "/var", "~", "/home/someone", "/root", "shared"])
def test_a_state_dir_whipup_would_chmod_0700_must_be_its_own(tmp_path, monkeypatch, state_dir):
    """The state dir is made 0700 (see test_state_keys_nodes): never /, /tmp, a home directory, a shared one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o1777)
    data = minimal()
    data["cluster"]["state_dir"] = state_dir
    message = error_of(tmp_path, data)
    assert message.startswith("roles.yaml: cluster.state_dir: ") and message.endswith(
        "and whipup makes its state dir 0700: name a directory of its own (like ~/.whipup)")
    assert Path("/tmp").stat().st_mode & 0o1777 == 0o1777   # untouched


# --- something to launch -------------------------------------------------------------------

def test_count_zero_on_every_role_is_an_error(tmp_path):
    data = minimal()
    for role in data["roles"].values():
        role["count"] = 0
    assert error_of(tmp_path, data) == "roles.yaml: roles: every role has count 0: nothing would be launched"
    data["roles"]["proxy"]["count"] = 1
    assert load_config(write(tmp_path, data)).role("app").count == 0


# --- found by tests/unit/test_config_property.py -------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("!!timestamp x", "roles.yaml: not valid YAML: cannot read 'x': 'NoneType' object has no attribute 'groupdict' "
                      "at line 3"),   # PyYAML's own constructor fails with an AttributeError
    ("0x" + "f" * 5000, "roles.yaml: roles.app.count: expected an integer 0-50, got an integer of 20000 bits"),
])
def test_values_python_builds_badly_are_errors(tmp_path, value, expected):
    """An AttributeError from PyYAML's constructor, and the repr() of a 5000-hex-digit integer (which raises
    ValueError in Python 3.11+), once escaped the loader as tracebacks."""
    text = ("cluster: {name: t}\napp: {name: demo, repo: src}\n"
            f"roles: {{app: {{instance_type: t3.small, count: {value}}}}}\n")
    assert error_of(tmp_path, text) == expected


@pytest.mark.parametrize("url", ["http://10.255.255.254:8897/demo.git", "https://example.org/app.git",
                                 "ssh://git@example.org/app.git", "git@github.com:o/app.git"])
def test_git_urls_without_credentials_are_taken(tmp_path, url):
    data = minimal()
    data["app"].update({"strategy": "git", "repo": url})
    cfg = load_config(write(tmp_path, data))
    assert (cfg.app.strategy, cfg.app.repo, cfg.app.repo_path) == ("git", url, None)
