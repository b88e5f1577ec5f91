"""Code-only quick-update figures (issue 16): the demo and a project made by `wagtail start`, 1 app node,
dependencies unchanged, a template line changed and committed before each run.

Run as root from the repository root:  .venv/bin/python bench/quick.py [--runs 3] [--projects demo,wagtail]
[--sandbox N] [--baseline DIR]

For each project, on a private sandbox (bench/common.py; --sandbox N takes test sandbox N's names, to run
beside other local clouds): whip-up-full-system (proxy, app, db), then --runs times a template change and
`fab quick-update --component web --no-deps --no-upgrade-django --yes`. Per run it prints the whole `fab`
process's wall time, CPU-seconds and peak RSS (measured from outside), whipup's own per-stage summary, the
static files shipped, and the machine's load average.

--baseline DIR (another checkout of whipup, e.g. `git worktree add /tmp/base main`, with its .venv): a
second cluster per project, made and updated by that checkout's fab, the runs alternating between the two
(A B, B A, ...), so that both meet the same machine load.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import yaml

from common import ROOT, fab, load_average, machine, private_sandbox, table

sys.path.insert(0, str(ROOT))
from tests.e2e import projects  # noqa: E402  (the "any Django project" builders, after the path)
from tests.e2e.demo import demo_repo, git  # noqa: E402

STEPS = re.compile(r"^deployed .* in [\d.]+ s \((.*)\)$", re.M)
STATIC = re.compile(r"^\[proxy-0\] static: (.*)$", re.M)


def demo(sb, suffix: str = "") -> tuple[Path, Path, Path]:
    repo = demo_repo(sb.tmp / f"demo-app{suffix}", "BENCH_SESSION")
    roles = sb.roles(f"bench-quick-demo{suffix}", roles=["proxy", "app", "db"], repo=repo)
    return repo, roles, repo / "notes" / "templates" / "notes" / "index.html"


def wagtail(sb, suffix: str = "") -> tuple[Path, Path, Path]:
    """`wagtail start`, as tests/e2e/test_any_project.py deploys it: app.name and app.repo only."""
    repo = projects.wagtail(sb.tmp / f"wagtail{suffix}")
    roles = sb.roles(f"bench-quick-wagtail{suffix}", roles=["proxy", "app", "db"], repo=repo)
    data = yaml.safe_load(roles.read_text())
    data["app"] = {"name": "wagtail", "repo": str(repo)}
    roles.write_text(yaml.safe_dump(data, sort_keys=False))
    return repo, roles, repo / "home" / "templates" / "home" / "welcome_page.html"


def one_project(sb, kind: str, runs: int, baseline: Path | None) -> list[tuple[str, str]]:
    sides = {"": ROOT} if baseline is None else {"": ROOT, " (baseline)": baseline}
    clusters = {}
    rows: list[tuple[str, str]] = []
    for label, root in sides.items():
        repo, roles, page = (demo if kind == "demo" else wagtail)(sb, "-base" if label else "")
        up = fab(sb.env, "whip-up-full-system", "--config", str(roles), root=root)
        rows.append((f"{kind}{label}: whip-up-full-system (proxy, app, db), cold",
                     f"{up.seconds:.1f} s (load {load_average()})"))
        clusters[label] = (repo, roles, page, root, [])
    for n in range(runs):
        order = list(clusters) if n % 2 == 0 else list(reversed(clusters))
        for label in order:
            repo, roles, page, root, took = clusters[label]
            page.write_text(page.read_text() + f"\n<!-- bench change {time.time_ns()} -->\n")
            git(repo, "commit", "-q", "-am", f"bench change {n}")
            load = load_average()
            r = fab(sb.env, "quick-update", "--component", "web", "--no-deps", "--no-upgrade-django", "--yes",
                    "--config", str(roles), root=root)
            took.append(r.seconds)
            steps, static = STEPS.search(r.stdout), STATIC.search(r.stdout)
            rows.append((f"{kind}{label}: quick-update, code only, run {n + 1}",
                         f"{r.seconds:.2f} s, fab {r.cpu_seconds:.2f} CPU-s, {r.peak_rss_mib:.0f} MiB, load {load}"
                         + (f" ({steps.group(1)})" if steps else "")))
            if static:
                rows.append((f"{kind}{label}:   static files, run {n + 1}", static.group(1).strip()))
            print(r.stdout[-2500:], flush=True)
    for label, (*_, took) in clusters.items():
        rows.append((f"{kind}{label}: quick-update, code only, median of {runs} (goal <= 8 s)",
                     f"{statistics.median(took):.2f} s ({min(took):.2f}-{max(took):.2f})"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="quick-updates per project (default 3)")
    ap.add_argument("--projects", default="demo,wagtail", help="demo, wagtail or both (default)")
    ap.add_argument("--sandbox", type=int, default=None, help="use test sandbox N's names (default: the bench's own)")
    ap.add_argument("--baseline", type=Path, default=None, help="another whipup checkout to compare with (A B A B)")
    args = ap.parse_args()
    if args.baseline is not None and not (args.baseline / "fabfile" / "__init__.py").is_file():
        raise SystemExit(f"--baseline: {args.baseline} is not a whipup checkout")
    kinds = [k for k in args.projects.split(",") if k]
    if set(kinds) - {"demo", "wagtail"} or not 1 <= args.runs <= 50:
        raise SystemExit("--projects: demo and/or wagtail; --runs: 1-50")
    rows: list[tuple[str, str]] = []
    with private_sandbox(args.sandbox) as sb:
        for kind in kinds:
            rows += one_project(sb, kind, args.runs, args.baseline)
            print(table(f"quick-update, {kind}", rows) + "\n", flush=True)
    print(f"=== all figures\nmachine: {machine()}\n\n" + table("code-only quick-update, 1 app node", rows))


if __name__ == "__main__":
    main()
