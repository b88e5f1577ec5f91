"""Deploy figures on the local cloud (issue 6): cold whip-up-full-system, no-op re-runs, quick-update
scaling over 1/4/16 app hosts, rollback, requests during quick-update and rollback, peak memory.

Run as root from the repository root:  .venv/bin/python bench/deploy.py [--scale 1,4,16]
It uses a private sandbox (bench/common.py) and a standalone git copy of examples/demo, and removes both.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from common import ROOT, fab, machine, mutating_calls, private_sandbox, table
from load import Load


def app_repo(tmp: Path) -> Path:
    """examples/demo as a standalone git repository we can commit changes to."""
    repo = tmp / "demo-app"
    shutil.copytree(ROOT / "examples" / "demo", repo, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "demo app")
    return repo


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@whipup.invalid", *args],
                   cwd=repo, check=True, capture_output=True)


def code_change(repo: Path, n: int) -> None:
    """A code-only change (a template line), committed: requirements untouched."""
    page = repo / "notes" / "templates" / "notes" / "index.html"
    page.write_text(page.read_text() + f"\n<!-- bench change {n} -->\n")
    git(repo, "commit", "-q", "-am", f"bench change {n}")


def ssh_commands(stdout: str) -> str:
    """Per-host SSH command counts from configure's summary lines."""
    counts = re.findall(r"(\d+) ssh commands?", stdout)
    return ", ".join(counts) if counts else "?"


def proxy_address(sb, roles: Path) -> str:
    import json

    nodes = json.loads(fab(sb.env, "status", "--json", "--config", str(roles)).stdout)
    return next(n["private_ip"] for n in nodes if n["role"] == "proxy")


ROLLBACKS = 6
ROLLBACK_SPACING = 8.0


def current_release(sb, roles: Path) -> str:
    """The current release of app node 0, from `fab releases`."""
    out = fab(sb.env, "releases", "--config", str(roles)).stdout
    return re.search(r"^\s+\* (\d{14}-[0-9a-f]+)", out, re.M).group(1)


def set_app_count(roles: Path, count: int) -> None:
    data = yaml.safe_load(roles.read_text())
    data["roles"]["app"]["count"] = count
    roles.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="1,4,16", help="app host counts for the quick-update scaling (default 1,4,16)")
    args = ap.parse_args()
    scale = [int(x) for x in args.scale.split(",")]
    cold, noop, quick, rb, load_rows, mem = [], [], [], [], [], []
    with private_sandbox() as sb:
        repo = app_repo(sb.tmp)
        bridge = sb.env["WHIPUP_SANDBOX_BRIDGE"]

        # 1. cold whip-up-full-system: one role, then all default roles (separate clusters)
        one = sb.roles("bench-one", roles=["app"], repo=repo)
        r1 = fab(sb.env, "whip-up-full-system", "--config", str(one), check=False)
        cold.append(("whip-up-full-system, 1 role (app)",
                     f"{r1.seconds:.1f} s" if r1.code == 0 else f"failed ({r1.stderr.strip().splitlines()[-1]})"))
        full = sb.roles("bench-full", repo=repo)
        r4 = fab(sb.env, "whip-up-full-system", "--config", str(full))
        cold.append(("whip-up-full-system, 4 default roles", f"{r4.seconds:.1f} s"))
        if r1.code == 0:
            cold.append(("ratio all roles / 1 role (goal <= 1.3)", f"{r4.seconds / r1.seconds:.2f}"))
        mem.append(("peak RSS of fab, cold whip-up-full-system (4 roles)", f"{r4.peak_rss_mib:.0f} MiB"))
        print(table("1. cold whip-up-full-system", cold) + "\n", flush=True)

        # 2. no-op re-runs on the cluster
        w = fab(sb.env, "whip-up-full-system", "--config", str(full))
        noop.append(("whip-up-full-system, no-op re-run", f"{w.seconds:.1f} s"))
        noop.append(("  its mutating API calls (goal 0)", mutating_calls(w.stdout)))
        c = fab(sb.env, "configure", "--config", str(full))
        noop.append(("configure, no-op re-run (goal <= 1.0 s)", f"{c.seconds:.2f} s"))
        noop.append(("  SSH commands per host (goal <= 2)", ssh_commands(c.stdout)))
        print(table("2. no-op re-runs", noop) + "\n", flush=True)

        # 5. requests during quick-update and rollback, under a steady load through the proxy
        address = proxy_address(sb, full)
        code_change(repo, 0)
        with Load(address, bridge) as load:
            q = fab(sb.env, "quick-update", "--component", "web", "--no-deps", "--no-upgrade-django", "--yes",
                    "--config", str(full))
        load_rows.append(("during quick-update (web, code only)", load.summary()))
        with Load(address, bridge) as load:
            r = fab(sb.env, "rollback", "--config", str(full))
        load_rows.append(("during rollback", load.summary()))
        rb.append(("rollback of the web tier, under the load above", f"{r.seconds:.2f} s"))
        rb.append(("quick-update of the web tier under that load, code only (1 app host)", f"{q.seconds:.1f} s"))

        # 4. rollback of the whole cluster (proxy, app, worker), back and forth between two releases, spaced
        # as deploys are: a celery worker's restart keeps the worker host's CPU busy for ~5 s after each one
        ids = []
        for i in (1, 2):
            code_change(repo, 100 + i)
            fab(sb.env, "quick-update", "--component", "all", "--no-deps", "--no-upgrade-django", "--yes",
                "--config", str(full))
            ids.append(current_release(sb, full))
        took = []
        for i in range(ROLLBACKS):
            time.sleep(ROLLBACK_SPACING)
            took.append(fab(sb.env, "rollback", "--to", ids[i % 2], "--config", str(full)).seconds)
        rb.insert(0, (f"rollback of the cluster, {ROLLBACKS} runs: median (min-max); goal <= 1 s",
                      f"{statistics.median(took):.2f} s ({min(took):.2f}-{max(took):.2f})"))
        print(table("4. rollback", rb) + "\n" + table("5. requests under load", load_rows) + "\n", flush=True)

        # 3. quick-update, code only, dependencies unchanged, on 1 / 4 / 16 app hosts
        times = {}
        for n in scale:
            set_app_count(full, n)
            fab(sb.env, "whip-up-full-system", "--config", str(full))
            code_change(repo, n)
            run = fab(sb.env, "quick-update", "--component", "web", "--no-deps", "--no-upgrade-django", "--yes",
                      "--config", str(full), check=False)
            if run.code != 0:
                quick.append((f"quick-update, code only, {n} app host(s)",
                              f"failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}"))
                print(run.stdout[-3000:] + run.stderr[-3000:], flush=True)
                continue
            times[n] = run.seconds
            steps = re.search(r"^deployed .* in [\d.]+ s \((.*)\)$", run.stdout, re.M)
            quick.append((f"quick-update, code only, {n} app host(s)",
                          f"{run.seconds:.2f} s" + (f" ({steps.group(1)})" if steps else "")))
            quick.append(("  CPU meanwhile: the fab process; the whole machine (every host)",
                          f"fab {run.cpu_seconds:.1f} s; machine {run.machine_busy:.1f} of "
                          f"{run.seconds * os.cpu_count():.1f} CPU-s ({run.machine_busy / (run.seconds * os.cpu_count()):.0%} busy)"))
            mem.append((f"peak RSS of fab, quick-update on {n} app host(s)", f"{run.peak_rss_mib:.0f} MiB"))
        if len(scale) > 1 and scale[0] in times and scale[-1] in times:
            quick.append((f"T({scale[-1]}) / T({scale[0]}) (goal <= 1.5)", f"{times[scale[-1]] / times[scale[0]]:.2f}"))
    print(f"=== all figures\nmachine: {machine()}\n")
    for title, rows in (("1. cold whip-up-full-system", cold), ("2. no-op re-runs", noop),
                        ("3. quick-update scaling", quick), ("4. rollback", rb),
                        ("5. requests under load (4 workers through the proxy)", load_rows),
                        ("6. peak memory of the fab process", mem)):
        print(table(title, rows) + "\n")


if __name__ == "__main__":
    main()
