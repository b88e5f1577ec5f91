"""bench/peers.py's pure parts: whipup's plan rendered for pyinfra and Ansible (bench/peers_render.py), and
the change counts read from each tool's own summary (bench/peers_tools.py). No network, no tool run."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml

from fabfile.configure.desired import nginx_sites
from fabfile.configure.want import Desired, DesiredDir, DesiredFile, DesiredUser

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import peers_render  # noqa: E402  (bench/ on the path)
import peers_tools  # noqa: E402
from common import Run  # noqa: E402
from peers_state import Host, Ssh  # noqa: E402

ROOT = Path("/tmp/run")
SSH = Ssh("admin", Path("/k/id_ed25519"), Path("/k/known_hosts"))
SITE = DesiredFile("/etc/nginx/sites-available/whipup.conf", "server { listen 80; }\n", "root", "root", "0644",
                   notify="nginx", action="reload", src="etc/nginx/sites-available/whipup.conf.j2")
HBA = DesiredFile("/etc/postgresql/15/main/pg_hba.conf", "host all all 10.0.0.5/32 scram-sha-256\n",
                  "postgres", "postgres", "0640", notify="postgresql", action="reload")
CONF = DesiredFile("/etc/postgresql/15/main/conf.d/whipup.conf", "listen_addresses = '*'\n", "postgres",
                   "postgres", "0644", notify="postgresql", action="restart")
ODD = DesiredFile("/etc/x; whoami", "x; whoami\n", "root", "root", "0600")


def proxy() -> Host:
    links, absent = nginx_sites((SITE,))
    return Host("c-proxy-0", "10.1.1.10", "proxy",
                Desired(packages=("git", "nginx"), files=(SITE, ODD), links=links, absent=absent,
                        services=("nginx",)))


def db() -> Host:
    return Host("c-db-0", "10.1.1.11", "db",
                Desired(packages=("postgresql",), user=DesiredUser("demo", "/srv/demo", "/usr/sbin/nologin"),
                        dirs=(DesiredDir("/srv/demo", "demo", "demo", "0755"),), files=(CONF, HBA),
                        services=("postgresql",)))


def test_host_data_holds_files_with_owner_mode_the_site_link_and_one_handler_per_service():
    data = peers_render.host_data("c-db-0", db().want, ROOT)
    assert data["files"][1] == {"path": HBA.path, "src": "/tmp/run/files/c-db-0/etc/postgresql/15/main/pg_hba.conf",
                                "owner": "postgres", "group": "postgres", "mode": "0640"}
    assert data["handlers"] == [{"name": "postgresql", "action": "restart", "paths": [CONF.path, HBA.path]}]
    assert data["user"] == {"name": "demo", "home": "/srv/demo", "shell": "/usr/sbin/nologin"}
    site = peers_render.host_data("c-proxy-0", proxy().want, ROOT)
    assert site["links"] == [{"path": "/etc/nginx/sites-enabled/whipup.conf", "target": SITE.path}]
    assert site["absent"] == [{"path": "/etc/nginx/sites-enabled/default"}]
    assert site["handlers"] == [{"name": "nginx", "action": "reload",
                                 "paths": [SITE.path, "/etc/nginx/sites-enabled/whipup.conf",
                                           "/etc/nginx/sites-enabled/default"]}]


def test_ansible_inventory_playbook_and_contents():
    files = peers_render.ansible_files([proxy(), db()], SSH, ROOT, tuned=True)
    inventory = yaml.safe_load(files["inventory.yml"])["all"]["hosts"]
    host = inventory["c-proxy-0"]
    assert host["ansible_host"] == "10.1.1.10" and host["ansible_user"] == "admin"
    assert "UserKnownHostsFile=/k/known_hosts" in host["ansible_ssh_common_args"]
    assert host["whipup"]["links"] == [{"path": "/etc/nginx/sites-enabled/whipup.conf", "target": SITE.path}]
    assert host["whipup"]["files"][1]["path"] == "/etc/x; whoami"       # a string in YAML, not code
    assert "{{" not in files["inventory.yml"]        # no Jinja in the data: Ansible templates nothing of it
    assert files["files/c-db-0/etc/postgresql/15/main/pg_hba.conf"] == HBA.content
    assert files["files/c-proxy-0/etc/x; whoami"] == "x; whoami\n"
    tasks = {t["name"]: t for t in yaml.safe_load(files["playbook.yml"])[0]["tasks"]}
    assert tasks["files"]["ansible.builtin.copy"]["mode"] == "{{ item.mode }}"
    assert tasks["links"]["ansible.builtin.file"]["state"] == "link"
    assert tasks["services"]["ansible.builtin.service"] == {"name": "{{ item }}", "state": "started",
                                                           "enabled": True}


def test_ansible_cfg_tuned_and_default():
    tuned = peers_render.ansible_cfg(True, 24, ROOT)
    for line in ("forks = 24", "pipelining = True", "gathering = explicit", "ControlPersist=60s"):
        assert line in tuned
    default = peers_render.ansible_cfg(False, 24, ROOT)
    assert default == "[defaults]\nlocal_tmp = /tmp/run/ansible-tmp\n"


def test_pyinfra_inventory_is_data_and_the_odd_value_stays_a_string():
    files = peers_render.pyinfra_files([proxy(), db()], SSH, ROOT)
    tree = ast.parse(files["inventory.py"])
    hosts = ast.literal_eval(tree.body[-1].value)         # a literal: no call, no name, nothing run
    name, data = hosts[0]
    assert name == "c-proxy-0" and data["ssh_hostname"] == "10.1.1.10" and data["ssh_key"] == "/k/id_ed25519"
    assert data["whipup"]["files"][1] == {"path": "/etc/x; whoami", "src": "/tmp/run/files/c-proxy-0/etc/x; whoami",
                                          "owner": "root", "group": "root", "mode": "0600"}
    assert "whoami" not in files["deploy.py"]
    assert "files.link(" in files["deploy.py"] and "_if=any_changed(" in files["deploy.py"]
    compile(files["deploy.py"], "deploy.py", "exec")


def run(stdout: str, code: int = 0) -> Run:
    return Run(1.0, 10.0, stdout, "", code)


def test_change_counts_from_each_tool():
    pyinfra = "    Operation   Hosts   Success   Error   No Change\n    file /etc/a   1   1   -   -\n" \
              "    \x1b[1mGrand total\x1b[0m   12   1   -   11\n"
    assert peers_tools.pyinfra_changes("pyinfra", run(pyinfra)) == 1
    assert peers_tools.pyinfra_changes("pyinfra", run(pyinfra.replace("12   1", "12   -"))) == 0
    with pytest.raises(SystemExit):
        peers_tools.pyinfra_changes("pyinfra", run(pyinfra.replace("-   11", "2   11")))
    recap = ("PLAY RECAP ****\nc-db-0 : ok=7    changed=1    unreachable=0    failed=0    skipped=1\n"
             "c-proxy-0 : ok=7    changed=0    unreachable=0    failed=0    skipped=1\n")
    assert peers_tools.ansible_changes("ansible", run(recap)) == 1
    with pytest.raises(SystemExit):
        peers_tools.ansible_changes("ansible", run(recap.replace("unreachable=0", "unreachable=1", 1)))
    whipup = "[c-db-0] changed 0, ok 12, failed 0 (1 ssh command, 0.2 s)\n[c-app-0] changed 2, ok 9, failed 0 (x)\n"
    assert peers_tools.whipup_changes(run(whipup)) == 2
    with pytest.raises(SystemExit):
        peers_tools.whipup_changes(run(whipup, code=1))
