"""fabfile.names: app.name, cluster.name and the role names, against the systems they become names in."""
from __future__ import annotations

import pytest
import yaml

from fabfile.config import ConfigError, load_config
from fabfile.names import SYSTEM_GROUPS, SYSTEM_USERS


def minimal(app="demo", cluster="t", roles=("app",), ssh_user=None) -> dict:
    data = {"cluster": {"name": cluster}, "app": {"name": app, "repo": "src"},
            "roles": {r: {"instance_type": "t3.small"} for r in roles}}
    if ssh_user:
        data["cluster"]["ssh"] = {"user": ssh_user}
    return data


def error_of(tmp_path, data) -> str:
    (tmp_path / "src").mkdir(exist_ok=True)
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.mark.parametrize("app, expected", [
    ("postgres", "roles.yaml: app.name: 'postgres' is the PostgreSQL superuser's name; pick another"),
    ("admin", "roles.yaml: app.name: 'admin' is cluster.ssh.user, the nodes' login user; pick another"),
    ("root", "roles.yaml: app.name: 'root' is a system account on Debian and Ubuntu images"),
    ("www_data", None),   # www-data is the account; www_data is a new name
    ("redis", "roles.yaml: app.name: 'redis' is a system account"),
    ("sshd", "roles.yaml: app.name: 'sshd' is a system account"),
    ("nobody", "roles.yaml: app.name: 'nobody' is a system account"),
    ("sudo", "roles.yaml: app.name: 'sudo' is a system group on Debian and Ubuntu images (useradd --user-group"),
    ("adm", "roles.yaml: app.name: 'adm' is a system group"),
    ("pg_app", "roles.yaml: app.name: 'pg_app': PostgreSQL reserves role names starting with pg_; pick another"),
    ("all", "roles.yaml: app.name: 'all' is pg_hba.conf's word for every database and every user; pick another"),
    ("public", "roles.yaml: app.name: 'public' is a reserved PostgreSQL role name; pick another"),
    ("template1", "roles.yaml: app.name: 'template1' is a PostgreSQL template database; pick another"),
    ("a" * 33, "roles.yaml: app.name: 'aaaaaaaaaaaaaaaaaaaa'... is 33 characters; it names the app's Linux user "
               "and group, and useradd allows 32"),
])
def test_app_name_against_linux_and_postgresql(tmp_path, app, expected):
    if expected is None:
        (tmp_path / "src").mkdir()
        path = tmp_path / "roles.yaml"
        path.write_text(yaml.safe_dump(minimal(app=app)))
        assert load_config(path).app.name == app
    else:
        assert error_of(tmp_path, minimal(app=app)).startswith(expected)


def test_a_32_character_app_name_is_the_longest(tmp_path):
    (tmp_path / "src").mkdir()
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(minimal(app="a" * 32)))
    assert load_config(path).app.name == "a" * 32


def test_the_ssh_user_is_whatever_roles_yaml_says(tmp_path):
    message = error_of(tmp_path, minimal(app="deploy", ssh_user="deploy"))
    assert message == "roles.yaml: app.name: 'deploy' is cluster.ssh.user, the nodes' login user; pick another"
    (tmp_path / "roles.yaml").write_text(yaml.safe_dump(minimal(app="admin", ssh_user="ubuntu")))
    with pytest.raises(ConfigError, match="'admin' is a system account"):   # still the Debian image's user
        load_config(tmp_path / "roles.yaml")


def test_the_lists_hold_the_accounts_the_issue_names():
    for name in ("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
                 "www-data", "backup", "list", "irc", "gnats", "nobody", "messagebus", "sshd", "_apt", "postgres",
                 "redis", "admin", "debian", "ubuntu"):
        assert name in SYSTEM_USERS
    assert {"sudo", "adm", "shadow", "disk", "staff", "users", "nogroup"} <= SYSTEM_GROUPS


def test_node_names_must_fit_a_host_name_label(tmp_path):
    cluster = "c" * 40
    role = "r" * (63 - 40 - 4 + 1)    # <cluster>-<role>-99 is 64 characters
    message = error_of(tmp_path, minimal(cluster=cluster, roles=(role, "app")))
    assert message.startswith(f"roles.yaml: roles.{role}: node names <cluster>-<role>-<index> are host names of "
                              f"at most 63 characters, and '{cluster}-{role}-99' is 64: shorten the role name "
                              f"or cluster.name")
    ok = "r" * (63 - 40 - 4)
    (tmp_path / "roles.yaml").write_text(yaml.safe_dump(minimal(cluster=cluster, roles=(ok,))))
    assert load_config(tmp_path / "roles.yaml").role_names == (ok,)


def test_a_security_group_name_may_not_start_with_sg(tmp_path):
    assert error_of(tmp_path, minimal(cluster="sg-prod")).startswith(
        "roles.yaml: cluster.name: 'sg-prod': security group names <cluster>-<role> may not start with 'sg-'")


def test_a_role_name_too_long_for_aws_names_the_role(tmp_path):
    role = "r" * 300
    assert error_of(tmp_path, minimal(roles=(role,))).startswith(
        f"roles.yaml: roles.{role}: the tag value whipup:role 'rrrr")
