"""The monitor's SMTP login: roles.yaml's username and password_file, Alertmanager's config naming a password
file (never the password), and the password installed on the node on stdin, only when it differs."""
from __future__ import annotations

import dataclasses
import grp
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from fabfile.config import ConfigError, load_config
from fabfile.monitor import smtp
from fabfile.monitor.context import SMTP_PASSWORD

from test_monitor_templates import REPO, rendered   # the monitor's rendered files, by remote path

EMAIL = {"to": "ops@example.com", "from": "whipup@example.com", "smarthost": "smtp.example.com:587"}


def loaded(roles_file: Path):
    cfg = load_config(roles_file)
    return dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))


def with_email(roles_file: Path, **email) -> Path:
    data = yaml.safe_load(roles_file.read_text())
    data["roles"]["monitor"]["count"] = 1
    data["monitor"]["email"] = {**EMAIL, **email}
    roles_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return roles_file


def test_a_login_is_a_user_name_and_a_password_file_and_alertmanager_reads_the_file(roles_file):
    secret = roles_file.parent / "smtp-password"
    secret.write_text("s3cr3t-Pa55\n")
    cfg = loaded(with_email(roles_file, username="apikey", password_file="smtp-password"))
    assert cfg.monitor.email.username == "apikey" and cfg.monitor.email.password_file == secret
    text = rendered(cfg)["/etc/prometheus/alertmanager.yml"]
    conf = yaml.safe_load(text)
    assert conf["global"]["smtp_auth_username"] == "apikey"
    assert conf["global"]["smtp_auth_password_file"] == SMTP_PASSWORD
    assert "s3cr3t" not in text


def test_no_login_no_auth_keys(roles_file):
    cfg = loaded(with_email(roles_file))
    conf = yaml.safe_load(rendered(cfg)["/etc/prometheus/alertmanager.yml"])
    assert "smtp_auth_username" not in conf["global"] and "smtp_auth_password_file" not in conf["global"]


@pytest.mark.parametrize("email, message", [
    ({"username": "apikey"}, "monitor.email.password_file: required with username"),
    ({"password_file": "p"}, "monitor.email.username: required with password_file"),
    ({"username": "api key", "password_file": "p"}, "monitor.email.username: expected an SMTP user name"),
    ({"username": "apikey", "password_file": "missing"}, "monitor.email.password_file: file not found"),
    ({"username": "apikey", "password_file": "empty"}, "monitor.email.password_file: "),
])
def test_bad_logins_name_the_key(roles_file, email, message):
    (roles_file.parent / "p").write_text("pw\n")
    (roles_file.parent / "empty").write_text("\n")
    with pytest.raises(ConfigError) as info:
        load_config(with_email(roles_file, **email))
    assert message in str(info.value)


def test_the_install_command_quotes_its_values():
    cmd = smtp.install_command("/etc/x; whoami", "g; whoami")
    script = shlex.split(cmd)[-1]
    assert "cat > '/etc/x; whoami.tmp'" in script and "-g 'g; whoami'" in script
    assert smtp.install_command().startswith("sudo -n -- sh -c ")


def test_the_password_goes_on_stdin_and_is_written_only_when_it_changed(tmp_path):
    """Alertmanager reads the file at each notification: nothing is restarted."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    (bindir / "service").write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(tmp_path / "service.log"))}\n')
    for f in ("sudo", "service"):   # a service call would be logged
        (bindir / f).chmod(0o755)
    target = tmp_path / "etc" / "alertmanager-smtp-password"
    group = grp.getgrgid(os.getgid()).gr_name
    cmd = smtp.install_command(str(target), group)
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}

    def run(secret: str) -> str:
        p = subprocess.run(["sh", "-c", cmd], input=secret, capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    assert run("pw-1") == "changed" and target.read_text() == "pw-1"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert run("pw-1") == "unchanged"
    assert run("pw-2") == "changed" and target.read_text() == "pw-2"
    assert not (tmp_path / "service.log").exists()
    assert not Path(str(target) + ".tmp").exists()
    assert "pw-" not in cmd


def test_nothing_to_do_without_a_monitor_or_a_login(cfg):
    from fabfile.monitor.config import EmailSettings, MonitorConfig

    calls = []
    smtp.ensure_all(cfg, [], calls.append)
    on = dataclasses.replace(cfg, roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r
                                              for r in cfg.roles),
                             monitor=MonitorConfig(email=EmailSettings("a@b.org", "c@d.org", "h:25")))
    smtp.ensure_all(on, [], calls.append)                     # email without a login: nothing to install
    assert calls == []
