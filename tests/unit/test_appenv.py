"""The app's own environment (fabfile/appenv): the layers, the store on disk, SSM through moto, the task's
arguments, and masking."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import boto3
import pytest

from fabfile import appenv
from fabfile.appconfig import SecretSpec
from fabfile.appenv import EnvError, EnvVar, Store
from fabfile.cloud import open_cloud
from fabfile.layout import Layout, env_text

SECRET = "s3cr3t-Value-9f8e"


@pytest.fixture
def acfg(cfg):
    """roles.yaml with app.env FOO and DEBUG_TOOLBAR, a file secret API_KEY, an SSM secret TOKEN."""
    return replace(cfg, app=replace(cfg.app, env=(("FOO", "1"), ("DEBUG_TOOLBAR", "off")),
                                    secrets=(SecretSpec("API_KEY"), SecretSpec("TOKEN", "/demo/token"))))


@pytest.fixture
def ssm(aws):
    client = boto3.client("ssm", region_name="us-east-1")
    client.put_parameter(Name="/demo/token", Value="tok-" + SECRET, Type="SecureString")
    return client


def no_cloud():
    pytest.fail("the SSM client was asked for")


def by_name(variables):
    return {v.name: v for v in variables}


# --- resolving -----------------------------------------------------------------------------------

def test_roles_yaml_file_secret_and_ssm_secret_through_moto(acfg, ssm):
    appenv.save_store(acfg, Store(), Store(secrets={"API_KEY": SECRET}))
    got = appenv.resolve(acfg, ssm=lambda: ssm)
    assert got == [
        EnvVar("FOO", "1", False, "roles.yaml app.env"),
        EnvVar("DEBUG_TOOLBAR", "off", False, "roles.yaml app.env"),
        EnvVar("API_KEY", SECRET, True, f"roles.yaml app.secrets, file {appenv.secrets_dir(acfg) / 'API_KEY'}"),
        EnvVar("TOKEN", "tok-" + SECRET, True, "roles.yaml app.secrets, ssm /demo/token"),
    ]
    assert appenv.values(got) == {"FOO": "1", "DEBUG_TOOLBAR": "off", "API_KEY": SECRET, "TOKEN": "tok-" + SECRET}


def test_the_secret_file_is_0600_in_a_0700_dir_and_read_back_exactly(acfg):
    value = "  spaced value with 'quotes' and $dollar  "
    appenv.save_store(acfg, Store(), Store(secrets={"API_KEY": value}))
    path = appenv.secrets_dir(acfg) / "API_KEY"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.read_text() == value + "\n"
    assert appenv.load_store(acfg).secrets == {"API_KEY": value}


def test_a_secret_file_others_can_read_is_refused(acfg):
    appenv.save_store(acfg, Store(), Store(secrets={"API_KEY": SECRET}))
    path = appenv.secrets_dir(acfg) / "API_KEY"
    os.chmod(path, 0o644)
    with pytest.raises(EnvError, match=r"API_KEY: readable by others \(mode 0644\); chmod 600 ") as info:
        appenv.load_store(acfg)
    assert SECRET not in str(info.value)


def test_without_ssm_secrets_no_cloud_is_opened(cfg):
    plain = replace(cfg, app=replace(cfg.app, env=(("FOO", "1"),), secrets=(SecretSpec("API_KEY"),)))
    appenv.save_store(plain, Store(), Store(secrets={"API_KEY": SECRET}))
    assert appenv.values(appenv.resolve(plain, ssm=no_cloud)) == {"FOO": "1", "API_KEY": SECRET}


def test_overrides_are_layered_over_roles_yaml(acfg, ssm):
    store = Store(plain={"FOO": "2", "EXTRA": "x y"}, secrets={"API_KEY": SECRET, "TOKEN": "local", "NEW": "n"},
                  unset=frozenset({"DEBUG_TOOLBAR"}))
    got = by_name(appenv.resolve(acfg, store, ssm=no_cloud))      # TOKEN's local override: SSM never asked
    assert list(got) == ["FOO", "API_KEY", "TOKEN", "EXTRA", "NEW"]
    assert got["FOO"] == EnvVar("FOO", "2", False, "fab env.set (over roles.yaml app.env)")
    assert got["TOKEN"] == EnvVar("TOKEN", "local", True, "fab env.set --secret (over ssm /demo/token)")
    assert got["EXTRA"] == EnvVar("EXTRA", "x y", False, "fab env.set")
    assert got["NEW"] == EnvVar("NEW", "n", True, "fab env.set --secret")


def test_a_missing_file_secret_names_the_file_and_the_command(acfg, ssm):
    with pytest.raises(EnvError) as info:
        appenv.resolve(acfg, Store(), ssm=lambda: ssm)
    assert str(info.value) == (
        f"roles.yaml: app.secrets[0]: API_KEY has no value: no file {appenv.secrets_dir(acfg) / 'API_KEY'}; "
        f"set it: fab env.set --secret API_KEY=VALUE (or `fab env.set --secret -` with API_KEY=VALUE on stdin)")


def test_a_missing_ssm_parameter_names_the_parameter_and_the_command(acfg, aws):
    client = boto3.client("ssm", region_name="us-east-1")
    with pytest.raises(EnvError) as info:
        appenv.resolve(acfg, Store(secrets={"API_KEY": SECRET}), ssm=lambda: client)
    message = str(info.value)
    assert message.startswith("roles.yaml: app.secrets[1].ssm: TOKEN: SSM parameter /demo/token not found "
                              "(sandbox, us-east-1); put it there: aws ssm put-parameter --name /demo/token ")
    assert message.endswith("or set it here: fab env.set --secret TOKEN=VALUE (or `fab env.set --secret -` with "
                            "TOKEN=VALUE on stdin)")
    assert SECRET not in message


def test_both_missing_are_named_at_once(acfg, aws):
    client = boto3.client("ssm", region_name="us-east-1")
    with pytest.raises(EnvError) as info:
        appenv.resolve(acfg, Store(), ssm=lambda: client)
    assert [line.split(":")[1] for line in str(info.value).splitlines()] == [" app.secrets[0]", " app.secrets[1].ssm"]


def test_ssm_through_the_sandbox_path_a_moto_server_on_loopback(acfg):
    """The sandbox's own way: open_cloud('sandbox', endpoint) and Cloud.client('ssm'), against moto's server
    (the local cloud is one) on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        cloud = open_cloud("sandbox", "us-east-1", endpoint_url=f"http://{host}:{port}")
        cloud.client("ssm").put_parameter(Name="/demo/token", Value=SECRET, Type="SecureString")
        store = Store(secrets={"API_KEY": "k"})
        got = by_name(appenv.resolve(acfg, store, ssm=appenv.once(lambda: cloud.client("ssm"))))
        assert got["TOKEN"].value == SECRET
    finally:
        server.stop()


def test_a_plain_override_of_a_declared_secret_in_env_json_is_refused(acfg):
    appenv.store_path(acfg).parent.mkdir(parents=True, exist_ok=True)
    appenv.store_path(acfg).write_text(json.dumps({"set": {"API_KEY": "plain"}, "unset": []}))
    with pytest.raises(EnvError, match=r"env.json: API_KEY is a secret in roles.yaml app.secrets; a plain value"):
        appenv.resolve(acfg, ssm=no_cloud)


@pytest.mark.parametrize("text, message", [
    ("[1]", r"expected \{\"set\""),
    ("{nope", r"not JSON"),
    ('{"set": {"DATABASE_URL": "x"}}', r"set.DATABASE_URL: DATABASE_URL is set by whipup itself"),
    ('{"set": {"A": "x\\ny"}}', r"set.A: expected a string without newline or NUL"),
])
def test_a_broken_env_json_names_the_file(acfg, text, message):
    appenv.store_path(acfg).parent.mkdir(parents=True, exist_ok=True)
    appenv.store_path(acfg).write_text(text)
    with pytest.raises(EnvError, match=message) as info:
        appenv.load_store(acfg)
    assert str(appenv.store_path(acfg)) in str(info.value)


# --- the .env ------------------------------------------------------------------------------------

def test_env_text_appends_the_apps_variables_sh_quoted():
    L = Layout("demo", "demo.settings", "requirements.txt")
    base = env_text(L, secret_key="k", db_password=None, db_host=None, broker_host=None)
    text = env_text(L, secret_key="k", db_password=None, db_host=None, broker_host=None,
                    extra={"FOO": "bar", "MSG": "x; whoami", "Q": "it's"})
    assert text == base + "FOO=bar\nMSG='x; whoami'\nQ='it'\"'\"'s'\n"


# --- the arguments -------------------------------------------------------------------------------

def test_parse_assignment():
    assert appenv.parse_assignment("FOO=bar=baz", "env.set") == ("FOO", "bar=baz")
    assert appenv.parse_assignment("FOO=", "env.set") == ("FOO", "")


@pytest.mark.parametrize("text, message", [
    (SECRET, "env.set: expected NAME=VALUE, and it has no '=' (not shown: it may be a secret)"),
    ("=" + SECRET, "env.set: expected NAME=VALUE, and the name before '=' is empty"),
    ("FOO=a\nb" + SECRET, "env.set: FOO: a value may not hold a newline, CR or NUL (the .env has one line per variable)"),
    ("FOO=a\rb", "env.set: FOO: a value may not hold a newline, CR or NUL (the .env has one line per variable)"),
    ("1FOO=x", "env.set: 1FOO: expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got '1FOO'"),
    ("SECRET_KEY=" + SECRET, "env.set: SECRET_KEY: SECRET_KEY is set by whipup itself (reserved: "),
    ("WHIPUP_X=" + SECRET, "env.set: WHIPUP_X: WHIPUP_X is set by whipup itself"),
])
def test_bad_assignments_name_the_argument_never_the_value(text, message):
    with pytest.raises(EnvError) as info:
        appenv.parse_assignment(text, "env.set")
    assert str(info.value).startswith(message)
    assert SECRET not in str(info.value)


def test_parse_lines_skips_blanks_and_comments_and_names_the_line():
    assert appenv.parse_lines("# keys\nA=1\r\n\n  \nB=two words\n") == [("A", "1"), ("B", "two words")]
    with pytest.raises(EnvError, match=r"^env.set: stdin line 2: expected NAME=VALUE, and it has no '='"):
        appenv.parse_lines("A=1\n" + SECRET + "\n")
    with pytest.raises(EnvError, match="stdin held no NAME=VALUE line"):
        appenv.parse_lines("# nothing\n\n")


def test_parse_names():
    assert appenv.parse_names("FOO") == ["FOO"]
    assert appenv.parse_names("FOO, BAR") == ["FOO", "BAR"]
    for bad, message in [("FOO,", "expected NAME or NAME,NAME"), ("PATH", "env.unset: PATH: PATH is set by whipup"),
                         ("a-b", "env.unset: a-b: expected an environment variable name")]:
        with pytest.raises(EnvError, match=message):
            appenv.parse_names(bad)


# --- what set and unset do -------------------------------------------------------------------------

def test_set_keeps_a_declared_names_kind(acfg):
    with pytest.raises(EnvError, match=r"env.set: FOO is a plain value in roles.yaml app.env: set it without --secret"):
        appenv.apply_set(acfg, Store(), [("FOO", "x")], secret=True)
    with pytest.raises(EnvError, match=r"env.set: TOKEN is a secret \(roles.yaml app.secrets\[1\]\): set it with --secret"):
        appenv.apply_set(acfg, Store(), [("TOKEN", "x")], secret=False)
    with pytest.raises(EnvError, match=r"env.set: A given more than once"):
        appenv.apply_set(acfg, Store(), [("A", "1"), ("A", "2")], secret=False)


def test_set_moves_an_undeclared_name_between_plain_and_secret_and_clears_unset(acfg):
    s = appenv.apply_set(acfg, Store(unset=frozenset({"FOO"})), [("FOO", "2"), ("X", "1")], secret=False)
    assert s == Store({"FOO": "2", "X": "1"}, {}, frozenset())
    s = appenv.apply_set(acfg, s, [("X", SECRET)], secret=True)
    assert s == Store({"FOO": "2"}, {"X": SECRET}, frozenset())


def test_unset(acfg):
    store = Store({"FOO": "2", "X": "1"}, {"TOKEN": "local", "API_KEY": SECRET})
    s, notes = appenv.apply_unset(acfg, store, ["FOO", "X", "TOKEN", "API_KEY"])
    assert s == Store({}, {}, frozenset({"API_KEY"}))
    assert notes == ["FOO: the fab env.set value removed; back to roles.yaml's", "X: the fab env.set value removed",
                     "TOKEN: the fab env.set value removed; back to roles.yaml's",
                     "API_KEY: hidden from the app (roles.yaml app.secrets[0] has it; fab env.set brings it back)"]
    s2, notes = appenv.apply_unset(acfg, s, ["FOO", "API_KEY"])
    assert s2 == Store({}, {}, frozenset({"API_KEY", "FOO"}))
    assert notes[1] == "API_KEY: already unset"
    with pytest.raises(EnvError, match=r"env.unset: NOPE is not set \(fab env lists the app's variables\)"):
        appenv.apply_unset(acfg, s, ["NOPE"])


def test_save_store_writes_and_removes_only_what_changed(acfg):
    before = Store({"A": "1"}, {"X": "x", "Y": "y"})
    appenv.save_store(acfg, Store(), before)
    after = Store({"A": "1"}, {"X": "x2"}, frozenset({"FOO"}))
    appenv.save_store(acfg, before, after)
    assert appenv.load_store(acfg) == after
    assert sorted(p.name for p in appenv.secrets_dir(acfg).iterdir()) == ["X"]
    assert json.loads(appenv.store_path(acfg).read_text()) == {"set": {"A": "1"}, "unset": ["FOO"]}
    assert appenv.store_path(acfg).stat().st_mode & 0o777 == 0o600


# --- masked views ----------------------------------------------------------------------------------

def test_changes_and_summary_mask_secrets():
    old = [EnvVar("A", "1", False, "roles.yaml app.env"), EnvVar("S", SECRET, True, "fab env.set --secret"),
           EnvVar("GONE", "g", False, "fab env.set")]
    new = [EnvVar("A", "2", False, "fab env.set (over roles.yaml app.env)"),
           EnvVar("S", SECRET + "2", True, "fab env.set --secret"), EnvVar("N", "x y", False, "fab env.set"),
           EnvVar("T", SECRET, True, "fab env.set --secret")]
    lines = appenv.changes(old, new)
    assert lines == ["A: 1 -> 2 (fab env.set (over roles.yaml app.env))", "S (secret): *** (changed) (fab env.set --secret)",
                     "N='x y': added (fab env.set)", "T=*** (secret): added (fab env.set --secret)",
                     "GONE: removed (was fab env.set)"]
    text = appenv.summary(old, new)
    assert text == "set A=2, S=***, N='x y', T=***; unset GONE"
    assert SECRET not in "\n".join(lines) + text
    assert appenv.changes(old, old) == [] and appenv.summary(old, old) == "no change"


def test_listing_masks_secrets_and_says_what_is_missing_or_hidden(acfg, aws):
    client = boto3.client("ssm", region_name="us-east-1")
    store = Store({"EXTRA": "x"}, {"API_KEY": SECRET}, frozenset({"DEBUG_TOOLBAR"}))
    lines = appenv.listing(acfg, store, ssm=lambda: client)
    assert lines[0].split() == ["NAME", "VALUE", "SOURCE"]
    assert [line.split()[:2] for line in lines[1:]] == [["FOO", "1"], ["API_KEY", "***"], ["TOKEN", "(missing)"],
                                                        ["EXTRA", "x"], ["DEBUG_TOOLBAR", "(unset)"]]
    assert "SSM parameter /demo/token not found" in lines[3]
    assert SECRET not in "\n".join(lines)


def test_listing_without_variables(cfg):
    assert appenv.listing(cfg, Store(), ssm=no_cloud) == [
        "the app has no variables of its own (roles.yaml app.env, app.secrets; fab env.set NAME=VALUE adds one)"]


def test_the_env_lines_read_back_exactly_when_sh_sources_them(tmp_path):
    import subprocess

    L = Layout("demo", "demo.settings", "requirements.txt")
    tricky = {"MSG": "x; whoami", "Q": "it's \"quoted\" $HOME `id`", "EMPTY": "", "SP": "  two  "}
    path = tmp_path / ".env"
    path.write_text(env_text(L, secret_key="k", db_password=None, db_host=None, broker_host=None, extra=tricky))
    script = '. "$1"; for n in MSG Q EMPTY SP; do eval "printf \'%s|\' \\"\\$$n\\""; done'
    out = subprocess.run(["sh", "-c", script, "sh", str(path)], capture_output=True, text=True, check=True).stdout
    assert out == "|".join(tricky.values()) + "|"
