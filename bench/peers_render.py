"""PURE: whipup's plan for each host (bench/peers_state.py) as a pyinfra deploy and as an Ansible playbook.

Both get the same state whipup converges to: the packages, the app user and its directories, every rendered
file (its content written under `<run dir>/files/<host>/...`, with whipup's owner, group and mode), the
links (the nginx site in sites-enabled) and removals (Debian's default site), the services started and
enabled at boot, and each notified service reloaded or restarted once when a file that names it changed.
The per-host values travel as data (the inventory's host variables), never inside code: a value such as
`x; whoami` stays a quoted string (repr in the pyinfra inventory, YAML in Ansible's) and reaches the
modules as an argument, never a shell.

`pyinfra_files(...)` and `ansible_files(...)` return {relative path: text}; `write(root, files)` writes them.
"""
from __future__ import annotations

from pathlib import Path

import yaml


def host_data(name: str, want, root: Path) -> dict:
    """One host's desired state as plain data (a fabfile.configure.want.Desired, its host values filled)."""
    handlers: dict[str, dict] = {}
    for item in tuple(want.files) + tuple(want.links) + tuple(want.absent):
        if item.notify:
            h = handlers.setdefault(item.notify, {"name": item.notify, "action": "reload", "paths": []})
            h["paths"].append(item.path)
            if item.action == "restart":
                h["action"] = "restart"
    user = want.user
    return {
        "packages": list(want.packages),
        "user": None if user is None else {"name": user.name, "home": user.home, "shell": user.shell},
        "dirs": [{"path": d.path, "owner": d.owner, "group": d.group, "mode": d.mode} for d in want.dirs],
        "files": [{"path": f.path, "src": str(root / "files" / name / f.path.lstrip("/")), "owner": f.owner,
                   "group": f.group, "mode": f.mode} for f in want.files],
        "links": [{"path": link.path, "target": link.target} for link in want.links],
        "absent": [{"path": a.path} for a in want.absent],
        "services": list(want.services),
        "handlers": list(handlers.values()),
    }


def contents(hosts, root: Path) -> dict[str, str]:
    """{path relative to the run dir: content}: every host's rendered files, under files/<host>/."""
    return {str(Path("files") / h.name / f.path.lstrip("/")): f.content for h in hosts for f in h.want.files}


PYINFRA_DEPLOY = '''\
"""Written by whipup's bench/peers.py: whipup's plan for this host (host.data.whipup)."""
from pyinfra import host
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

want = host.data.whipup
changed = {}
if want["packages"]:
    apt.packages(name="packages", packages=want["packages"])
if want["user"]:
    u = want["user"]
    server.user(name="user " + u["name"], user=u["name"], home=u["home"], shell=u["shell"], system=True,
                ensure_home=False, create_home=False)
for d in want["dirs"]:
    files.directory(name="directory " + d["path"], path=d["path"], user=d["owner"], group=d["group"],
                    mode=d["mode"])
for f in want["files"]:
    changed[f["path"]] = files.put(name="file " + f["path"], src=f["src"], dest=f["path"], user=f["owner"],
                                   group=f["group"], mode=f["mode"])
for link in want["links"]:
    changed[link["path"]] = files.link(name="link " + link["path"], path=link["path"], target=link["target"])
for a in want["absent"]:
    changed[a["path"]] = files.link(name="absent " + a["path"], path=a["path"], present=False)
for h in want["handlers"]:
    server.service(name=h["action"] + " " + h["name"], service=h["name"], running=True,
                   _if=any_changed(*[changed[p] for p in h["paths"]]), **{h["action"] + "ed": True})
for s in want["services"]:
    server.service(name="service " + s, service=s, running=True, enabled=True)
'''


def pyinfra_files(hosts, ssh, root: Path) -> dict[str, str]:
    """inventory.py (each host's address, login and data), deploy.py, and the files' contents."""
    entries = [(h.name, {"ssh_hostname": h.address, "ssh_user": ssh.user, "ssh_key": str(ssh.key),
                         "ssh_known_hosts_file": str(ssh.known_hosts), "ssh_strict_host_key_checking": "yes",
                         "whipup": host_data(h.name, h.want, root)}) for h in hosts]
    inventory = ('"""Written by whipup\'s bench/peers.py."""\n'
                 "hosts = [\n" + "".join(f"    {entry!r},\n" for entry in entries) + "]\n")
    return {"inventory.py": inventory, "deploy.py": PYINFRA_DEPLOY, **contents(hosts, root)}


PLAYBOOK = [{
    "name": "whipup's plan", "hosts": "all", "become": True,
    "tasks": [
        {"name": "packages", "ansible.builtin.apt": {"name": "{{ whipup.packages }}", "state": "present"},
         "when": "whipup.packages | length > 0"},
        {"name": "user", "ansible.builtin.user": {
            "name": "{{ whipup.user.name }}", "home": "{{ whipup.user.home }}", "shell": "{{ whipup.user.shell }}",
            "system": True, "create_home": False}, "when": "whipup.user is not none"},
        {"name": "directories", "ansible.builtin.file": {
            "path": "{{ item.path }}", "state": "directory", "owner": "{{ item.owner }}",
            "group": "{{ item.group }}", "mode": "{{ item.mode }}"}, "loop": "{{ whipup.dirs }}"},
        {"name": "files", "ansible.builtin.copy": {
            "src": "{{ item.src }}", "dest": "{{ item.path }}", "owner": "{{ item.owner }}",
            "group": "{{ item.group }}", "mode": "{{ item.mode }}"}, "loop": "{{ whipup.files }}",
         "register": "written"},
        {"name": "links", "ansible.builtin.file": {"src": "{{ item.target }}", "dest": "{{ item.path }}",
                                                   "state": "link"}, "loop": "{{ whipup.links }}",
         "register": "linked"},
        {"name": "absent", "ansible.builtin.file": {"path": "{{ item.path }}", "state": "absent"},
         "loop": "{{ whipup.absent }}", "register": "removed"},
        {"name": "notified services", "ansible.builtin.service": {
            "name": "{{ item.name }}", "state": "{{ item.action }}ed"}, "loop": "{{ whipup.handlers }}",
         "when": "item.paths | intersect(((written.results | default([])) + (linked.results | default([]))"
                 " + (removed.results | default([]))) | selectattr('changed') | map(attribute='item.path')"
                 " | list) | length > 0"},
        {"name": "services", "ansible.builtin.service": {"name": "{{ item }}", "state": "started",
                                                         "enabled": True}, "loop": "{{ whipup.services }}"},
    ],
}]


def ansible_cfg(tuned: bool, forks: int, root: Path) -> str:
    """ansible.cfg: users' best settings (tuned: pipelining, ControlPersist, forks, no fact gathering, a fixed
    interpreter), or Ansible's defaults (5 forks, facts gathered, interpreter discovery; its default ssh_args
    already hold ControlMaster=auto and ControlPersist=60s) but for where its local temp files go."""
    lines = ["[defaults]", f"local_tmp = {root}/ansible-tmp"]
    if tuned:
        lines += [f"forks = {forks}", "gathering = explicit", "interpreter_python = /usr/bin/python3",
                  "[ssh_connection]", "pipelining = True",
                  "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s",
                  f"control_path_dir = {root}/cp"]
    return "\n".join(lines) + "\n"


def ansible_files(hosts, ssh, root: Path, *, tuned: bool) -> dict[str, str]:
    """inventory.yml (each host's address, login and data), playbook.yml, ansible.cfg, the files' contents."""
    ssh_args = f"-o UserKnownHostsFile={ssh.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    inventory = {"all": {"hosts": {h.name: {
        "ansible_host": h.address, "ansible_user": ssh.user, "ansible_ssh_private_key_file": str(ssh.key),
        "ansible_ssh_common_args": ssh_args, "whipup": host_data(h.name, h.want, root)} for h in hosts}}}
    return {"inventory.yml": yaml.safe_dump(inventory, sort_keys=False),
            "playbook.yml": yaml.safe_dump(PLAYBOOK, sort_keys=False),
            "ansible.cfg": ansible_cfg(tuned, max(len(hosts), 5), root), **contents(hosts, root)}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
