"""Rollback figures (issue 12): `fab rollback` back and forth between two releases, for the demo cluster and
for a project made by `wagtail start` (its workers take seconds to import Wagtail), and the memory the
previous release's gunicorn costs on the app node while it is kept warm.

Run as root from the repository root:  .venv/bin/python bench/rollback.py [--runs 5] [--projects demo,wagtail]

For each project, on a private sandbox (bench/common.py): whip-up-full-system (release 1), a commit and
`fab deploy` (release 2); then `--runs` times `fab rollback` (to release 1) and `fab rollback --to` release 2
(forward). Per run it prints the wall time of the `fab rollback` command, whipup's own "healthy at X s", and
when the proxy first served the target release (its health path polled every 20 ms from the command's start,
until it names the target); then the resident memory (summed over each program's process tree, read from the
app node's /proc over SSH) of every `<app>-web*` supervisor program, the one nginx sends traffic to marked
live, any other running one previous. It knows no slot: today there is one program, and it says so.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common import ROOT, fab, machine, private_sandbox, table
from load import routed_to

sys.path.insert(0, str(ROOT))
from tests.e2e import projects  # noqa: E402  (the "any Django project" builders, after the path)
from tests.e2e.demo import demo_repo, git, sandbox_settings  # noqa: E402
from tests.e2e.hostprobe import UP, parse_programs, programs_command, serving, upstream_servers  # noqa: E402

POLL = 0.02
POLL_LIMIT = 120.0
HEALTHY = re.compile(r"healthy at ([\d.]+) s")


@dataclass
class Project:
    kind: str                       # demo | wagtail
    app: str                        # app.name
    repo: Path
    roles: Path
    health: str                     # the path whose JSON body names the release
    releases: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


class Nodes:
    """SSH to the cluster's nodes, with whipup's own connection code (the pinned host keys)."""

    def __init__(self, sb, roles: Path):
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(roles)
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(sb.ec2(), self.cfg.cluster.name)
                      if n.state == "running"}

    def ssh(self, node: str, command: str) -> str:
        from fabfile.remote import run
        from fabfile.ssh import connect

        conn = connect(self.cfg, self.nodes[node])
        try:
            return run(conn, command, step="bench probe", timeout=60).stdout
        finally:
            conn.close()

    def memory(self) -> dict:
        """{"live": [...], "previous": [...]}: (program, state, processes, MiB) of the app's web programs."""
        programs, _ = parse_programs(self.ssh("app-0", programs_command(f"{self.cfg.app.name}-web")))
        servers = upstream_servers(self.ssh("proxy-0", "sudo -n nginx -T 2>/dev/null"))
        live = serving(programs, servers, self.nodes["app-0"].private_ip)
        out = {"live": [], "previous": [], "other": []}
        for p in programs:
            kind = "live" if p in live else ("previous" if p.state in UP and p.bind else "other")
            out[kind].append((p.name, p.state, p.processes, p.rss_kib / 1024))
        return out


def demo_project(sb) -> Project:
    repo = demo_repo(sb.tmp / "demo-app", "BENCH_SESSION")
    roles = sb.roles("bench-rb-demo", repo=repo)
    return Project("demo", "demo", repo, roles, "/health")


def wagtail_project(sb) -> Project:
    """`wagtail start`, as tests/e2e/test_any_project.py deploys it: roles.yaml names only app.name and
    app.repo beside the shipped cluster (no worker: the project has no Celery app)."""
    repo = projects.wagtail(sb.tmp / "wagtail")
    roles = sb.roles("bench-rb-wagtail", repo=repo)
    data = yaml.safe_load(roles.read_text())
    data["app"] = {"name": "wagtail", "repo": str(repo)}
    data["roles"]["worker"]["count"] = 0
    roles.write_text(yaml.safe_dump(data, sort_keys=False))
    return Project("wagtail", "wagtail", repo, roles, "/-/health")


def current_release(sb, roles: Path) -> str:
    out = fab(sb.env, "releases", "--config", str(roles)).stdout
    return re.search(r"^\s+\* (\d{14}-[0-9a-f]+)", out, re.M).group(1)


def two_releases(sb, p: Project) -> None:
    up = fab(sb.env, "whip-up-full-system", "--config", str(p.roles))
    print(f"{p.kind}: whip-up-full-system {up.seconds:.0f} s", flush=True)
    p.releases.append(current_release(sb, p.roles))
    (p.repo / "BENCH_CHANGE").write_text(f"{time.time_ns()}\n")
    git(p.repo, "add", "-A")
    git(p.repo, "commit", "-q", "-m", "bench: a second release")
    d = fab(sb.env, "deploy", "--config", str(p.roles))
    print(f"{p.kind}: deploy of a second release {d.seconds:.0f} s", flush=True)
    p.releases.append(current_release(sb, p.roles))


class ServedAt:
    """From now on, GET the proxy's `path` every POLL s until its JSON names `release`: `seconds` then."""

    def __init__(self, address: str, path: str, release: str):
        self.url, self.release = f"http://{address}{path}", release
        self.seconds: float | None = None
        self.last = ""
        self.start = time.monotonic()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while time.monotonic() - self.start < POLL_LIMIT:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    body = r.read().decode(errors="replace")
            except (urllib.error.URLError, OSError) as exc:
                body = f"{type(exc).__name__}"
            try:
                named = json.loads(body).get("release")
            except (ValueError, AttributeError):
                named = None
            self.last = body[:200]
            if named == self.release:
                self.seconds = time.monotonic() - self.start
                return
            time.sleep(POLL)

    def wait(self) -> float | None:
        self._thread.join(POLL_LIMIT + 10)
        return self.seconds


def mib(entries: list) -> str:
    if not entries:
        return "none running"
    return "; ".join(f"{name} {state} {n} processes {m:.0f} MiB" for name, state, n, m in entries)


def one_run(sb, p: Project, nodes: Nodes, address: str, n: int, direction: str) -> dict:
    back = direction == "back"
    target = p.releases[0] if back else p.releases[1]
    args = ["rollback", "--config", str(p.roles)] + ([] if back else ["--to", target])
    served = ServedAt(address, p.health, target)
    run = fab(sb.env, *args, check=False)
    seen = served.wait()
    if run.code != 0:
        raise SystemExit(f"{p.kind}: fab {' '.join(args)} exited {run.code}\n{run.stdout}\n{run.stderr}")
    healthy = HEALTHY.search(run.stdout)
    mem = nodes.memory()
    busy = run.machine_busy / (run.seconds * os.cpu_count())
    row = {"run": n, "direction": direction, "target": target, "wall": run.seconds, "busy": busy,
           "healthy": float(healthy.group(1)) if healthy else None, "served": seen, "memory": mem}
    print(f"{p.kind} #{n} {direction:7} -> {target}: fab rollback {run.seconds:.2f} s; whipup: healthy at "
          f"{row['healthy'] if row['healthy'] is not None else '?'} s; proxy serves it at "
          f"{f'{seen:.2f} s' if seen is not None else f'never within {POLL_LIMIT:g} s (last: {served.last!r})'}"
          f" (machine {busy:.0%} busy meanwhile, load average {os.getloadavg()[0]:.1f})"
          f"\n    live: {mib(mem['live'])}\n    previous: {mib(mem['previous'])}"
          + (f"\n    other: {mib(mem['other'])}" if mem["other"] else ""), flush=True)
    return row


def figures(values: list) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "?"
    return f"{statistics.median(got):.2f} s ({min(got):.2f}-{max(got):.2f})" + \
        (f", {len(values) - len(got)} without" if len(got) < len(values) else "")


def summary(p: Project) -> list[tuple[str, str]]:
    rows = []
    for direction in ("back", "forward"):
        mine = [r for r in p.rows if r["direction"] == direction]
        if not mine:
            continue
        rows.append((f"{direction}: fab rollback wall time, {len(mine)} runs, median (min-max)",
                     figures([r["wall"] for r in mine])))
        rows.append((f"{direction}: whipup's healthy at", figures([r["healthy"] for r in mine])))
        rows.append((f"{direction}: the proxy serves the target at", figures([r["served"] for r in mine])))
    rows.append(("the machine's CPU busy during the runs, median (other work on it slows every figure)",
                 f"{statistics.median(r['busy'] for r in p.rows):.0%}"))
    live = [sum(e[3] for e in r["memory"]["live"]) for r in p.rows]
    prev = [sum(e[3] for e in r["memory"]["previous"]) for r in p.rows]
    rows.append(("RSS of the live web program(s) on app-0, median", f"{statistics.median(live):.0f} MiB"))
    rows.append(("RSS of a previous (warm) web program on app-0, median",
                 f"{statistics.median(prev):.0f} MiB" if any(prev) else "0 (none running)"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="rollbacks each way per project (default 5)")
    ap.add_argument("--projects", default="demo,wagtail", help="demo, wagtail or both (default)")
    args = ap.parse_args()
    kinds = [k for k in args.projects.split(",") if k]
    unknown = set(kinds) - {"demo", "wagtail"}
    if unknown or not 1 <= args.runs <= 50:
        raise SystemExit(f"--projects: demo and/or wagtail (not {', '.join(sorted(unknown))}); --runs: 1-50")
    done: list[Project] = []
    with private_sandbox() as sb, sandbox_settings(sb.env):
        for kind in kinds:
            p = demo_project(sb) if kind == "demo" else wagtail_project(sb)
            two_releases(sb, p)
            nodes = Nodes(sb, p.roles)
            address = nodes.nodes["proxy-0"].private_ip
            if not routed_to(address, sb.env["WHIPUP_SANDBOX_BRIDGE"]):
                raise SystemExit(f"{address} is not a host of this sandbox; no request sent")
            before = nodes.memory()
            print(f"{p.kind}: before the first rollback: live {mib(before['live'])}; previous "
                  f"{mib(before['previous'])}", flush=True)
            n = 0
            for i in range(args.runs):
                for direction in ("back", "forward"):
                    n += 1
                    p.rows.append(one_run(sb, p, nodes, address, n, direction))
            done.append(p)
            print(table(f"rollback of the {p.kind} cluster", summary(p)) + "\n", flush=True)
    print(f"=== all figures\nmachine: {machine()}\n")
    for p in done:
        print(table(f"rollback of the {p.kind} cluster ({p.releases[0]} <-> {p.releases[1]})", summary(p)) + "\n")


if __name__ == "__main__":
    main()
