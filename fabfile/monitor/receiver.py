"""The recovery receiver: Alertmanager's `recover` webhook turns a lost app or proxy node into `fab recover ROLE`.

Where it runs, and why: on the control machine, where roles.yaml, the state dir (the cluster's SSH key, known
hosts, secrets) and the cloud API credentials already are; started by whip-up-full-system when roles.yaml has
`monitor.recover: true` and the monitor role on (or by `fab receiver`, on a machine that stays up). It listens on
127.0.0.1 only, on a port of its own, and reaches the monitor node by a reverse SSH tunnel (tunnel.py): the monitor
node's Alertmanager posts to 127.0.0.1:<monitor.receiver_port> on its own loopback, which the tunnel brings here
(templates/etc/prometheus/alertmanager.yml.j2, receiver `recover`, matched on NodeDown with role app or proxy).
The same on both targets: nothing in the cluster connects to this machine, and the monitor node holds no
credential and can start nothing but this.

One recovery runs at a time; an alert arriving while one runs for that role is dropped (Alertmanager repeats
it every 5 minutes while the node is still down: a failed recovery is retried then). Each run's output goes
to the log next to the pid file (state dir: <cluster>-monitor-receiver.log).

    python -m fabfile.monitor.receiver --config roles.yaml --target sandbox
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from .context import RECOVER_ROLES

ALERT = "NodeDown"
MAX_BODY = 1 << 20
MODULE = "fabfile.monitor.receiver"


def roles_to_recover(payload: object) -> list[str]:
    """PURE: the roles of the firing NodeDown alerts of an Alertmanager webhook body (app and proxy only)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        return []
    roles = []
    for alert in payload["alerts"]:
        labels = alert.get("labels") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or alert.get("status") != "firing" or labels.get("alertname") != ALERT:
            continue
        if labels.get("role") in RECOVER_ROLES:
            roles.append(labels["role"])
    return list(dict.fromkeys(roles))


def has_recover_task(fab_list: str) -> bool:
    """PURE: whether `fab -l` lists a `recover` task (the data side's `fab recover ROLE`)."""
    return any(line.split()[:1] == ["recover"] for line in fab_list.splitlines())


def recover_argv(role: str, config: str, target: str, has_recover: bool) -> list[str]:
    """PURE: the command that rebuilds a lost node of `role`: `fab recover ROLE`, or, where that task does not
    exist, `fab whip-up-full-system` (it launches the missing node, configures it and deploys its peers' release:
    fabfile/deploy/catchup.py). An argv: nothing reaches a shell."""
    if role not in RECOVER_ROLES:
        raise ValueError(f"not a role the monitor recovers: {role!r}")
    task = ["recover", role] if has_recover else ["whip-up-full-system"]
    return [sys.executable, "-m", "fabric", *task, "--config", config, "--target", target]


class Recoverer:
    """Runs recoveries one at a time, in a thread of its own; `offer` never blocks the HTTP answer."""

    def __init__(self, argv_for: Callable[[str], list[str]], log: Callable[[str], None], cwd: Path):
        self.argv_for, self.log, self.cwd = argv_for, log, cwd
        self.lock = threading.Lock()         # guards `busy`
        self.one_at_a_time = threading.Lock()
        self.busy: set[str] = set()

    def offer(self, roles: Iterable[str]) -> list[str]:
        """Start a recovery for each role not already being recovered; the roles started."""
        started = []
        with self.lock:
            for role in roles:
                if role not in self.busy:
                    self.busy.add(role)
                    started.append(role)
        for role in started:
            threading.Thread(target=self._run, args=(role,), daemon=True).start()
        return started

    def _run(self, role: str) -> None:
        with self.one_at_a_time:       # two whip-ups would race for the same cluster
            argv = self.argv_for(role)
            start = time.monotonic()
            self.log(f"recover {role}: {' '.join(argv[2:])}")
            p = subprocess.run(argv, cwd=self.cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            tail = (p.stdout[-3000:] + p.stderr[-3000:]).rstrip()
            self.log(f"recover {role}: exit {p.returncode} after {time.monotonic() - start:.0f} s\n{tail}")
            with self.lock:
                self.busy.discard(role)


def handler(recoverer: Recoverer, log: Callable[[str], None]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/recover" or not 0 < length <= MAX_BODY:
                self.send_error(404 if self.path != "/recover" else 400)
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "not JSON")
                return
            started = recoverer.offer(roles_to_recover(payload))
            log(f"alert from {self.client_address[0]}: recovering {', '.join(started) or 'nothing new'}")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt, *args):   # quiet: the recoveries are logged
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    p.add_argument("--config", required=True)
    p.add_argument("--target", required=True, choices=("sandbox", "aws"))
    a = p.parse_args(argv)
    from ..boundary import load
    from ..provision.tasks import connect_ec2
    from ..ssh import connect
    from .tunnel import keep_open

    cfg = load(a.config, a.target)
    root = Path(__file__).resolve().parents[2]

    def log(line: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)

    listed = subprocess.run([sys.executable, "-m", "fabric", "-l"], cwd=root, capture_output=True, text=True)
    has_recover = has_recover_task(listed.stdout)
    recoverer = Recoverer(lambda role: recover_argv(role, a.config, a.target, has_recover), log, root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(recoverer, log))
    port = server.server_address[1]
    stop = threading.Event()
    threading.Thread(target=keep_open, args=(cfg, cfg.monitor.receiver_port, port, log, stop), daemon=True,
                     kwargs={"open_ec2": lambda: connect_ec2(cfg)[0], "connect": connect}).start()
    log(f"listening on 127.0.0.1:{port} (pid {os.getpid()}), reached from the monitor node's "
        f"127.0.0.1:{cfg.monitor.receiver_port}; recovery: "
        f"{'fab recover ROLE' if has_recover else 'fab whip-up-full-system (no recover task yet)'}")
    try:
        server.serve_forever()
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
