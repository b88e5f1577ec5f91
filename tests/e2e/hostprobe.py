"""What runs where on an app node, read from the node itself (for the zero-downtime tests and bench/rollback.py):
the app's supervisor programs (state, pid, start time, the address gunicorn binds, how many processes and how
much resident memory its process tree holds, from the node's /proc) and which of them the proxy's nginx sends
traffic to (the upstream servers in `nginx -T`).

It knows no slot: a program is "serving" when nginx's upstream names the address it binds. Today that is the
one `<app>-web` program; with two slots, the live one (the other, kept warm, is reported beside it).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

# Run on the node as root with Debian's python3 (supervisor's own package is importable there): argv[1] the
# program name prefix, argv[2] "reread" to also ask supervisord whether the program files on disk differ from
# the configuration it runs (`supervisorctl reread`: it compares them with the active process groups).
SCRIPT = r'''
import json, os, sys, xmlrpc.client
from supervisor.xmlrpc import SupervisorTransport

rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
    None, None, "unix:///var/run/supervisor.sock"))
prefix, reread = sys.argv[1], sys.argv[2] == "reread"
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))

def tree(pid):
    out = [pid]
    for child in children.get(pid, []):
        out += tree(child)
    return out

def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def argv(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []

def bind(args):
    for i, a in enumerate(args):
        if a in ("--bind", "-b") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--bind="):
            return a.split("=", 1)[1]
    return None

found = []
for p in rpc.supervisor.getAllProcessInfo():
    if not p["name"].startswith(prefix):
        continue
    pids = tree(p["pid"]) if p["pid"] else []
    found.append({"name": p["name"], "group": p["group"], "state": p["statename"], "pid": p["pid"],
                  "start": p["start"], "processes": len(pids), "rss_kib": sum(rss_kib(x) for x in pids),
                  "bind": bind(argv(p["pid"])) if p["pid"] else None})
result = {"programs": found}
if reread:
    added, changed, removed = rpc.supervisor.reloadConfig()[0]
    result.update(added=added, changed=changed, removed=removed)
print(json.dumps(result))
'''


@dataclass(frozen=True)
class Program:
    name: str
    group: str
    state: str
    pid: int
    start: int                # epoch seconds supervisord started it (0: never)
    processes: int            # the process tree under its pid (gunicorn's master and workers)
    rss_kib: int              # their resident memory, summed
    bind: str | None          # gunicorn's --bind, e.g. 10.112.1.5:8000

    @property
    def port(self) -> int | None:
        return int(self.bind.rsplit(":", 1)[1]) if self.bind and ":" in self.bind else None


def programs_command(prefix: str, reread: bool = False) -> str:
    return (f"sudo -n python3 -c {shlex.quote(SCRIPT)} {shlex.quote(prefix)} "
            f"{'reread' if reread else 'read'}")


def parse_programs(text: str) -> tuple[list[Program], dict]:
    """(the programs, the reread's {added, changed, removed} or {}) from SCRIPT's JSON line."""
    data = json.loads(text.strip().splitlines()[-1])
    programs = [Program(**p) for p in data.pop("programs")]
    return programs, data


UP = ("RUNNING", "STARTING")
UPSTREAM = re.compile(r"^\s*upstream\s+\S+\s*\{(.*?)\}", re.S | re.M)
SERVER = re.compile(r"^\s*server\s+(\d+\.\d+\.\d+\.\d+):(\d+)([^;]*);", re.M)


def config_files(nginx_t: str) -> dict[str, str]:
    """`nginx -T`'s output by file: {path: its text} (each file follows a `# configuration file PATH:` line)."""
    parts = re.split(r"(?m)^# configuration file (\S+):$", nginx_t)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def upstream_servers(nginx_t: str) -> list[tuple[str, int]]:
    """(address, port) of every server of every upstream block in `nginx -T`'s output (with the files an
    upstream block includes), but those marked down or backup (they get no traffic while another is up)."""
    found, files = [], config_files(nginx_t)
    for block in UPSTREAM.findall(nginx_t):
        included = "".join(files.get(path, "") for path in re.findall(r"(?m)^\s*include\s+(\S+?);", block))
        for ip, port, rest in SERVER.findall(block + "\n" + included):
            if not re.search(r"\b(down|backup)\b", rest):
                found.append((ip, int(port)))
    return found


def serving(programs: list[Program], servers: list[tuple[str, int]], ip: str) -> list[Program]:
    """The programs of the node at `ip` that nginx sends traffic to: up (RUNNING, or STARTING: up for less than
    its startsecs), binding an address it names."""
    ports = {port for addr, port in servers if addr == ip}
    return [p for p in programs if p.state in UP and p.port in ports
            and p.bind is not None and p.bind.rsplit(":", 1)[0] in (ip, "0.0.0.0")]
