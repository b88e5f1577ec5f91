"""The control machine's cost as the cluster grows (issue 16): the CPU-seconds and peak memory of the `fab`
process itself in a no-op converge and in a code-only quick-update, with 1 app node and with 24.

Run as root from the repository root:  .venv/bin/python bench/scale.py [--nodes 1,24] [--runs 3] [--sandbox N]

One cluster (proxy, db and the app nodes, the demo app) grows to each count with `fab whip-up-full-system`;
then --runs times `fab configure` with nothing to do, and --runs times a template change committed and
`fab quick-update --component web --no-deps --no-upgrade-django --yes`. Whole `fab` processes timed from
outside: wall time, their CPU-seconds (user + system, children included: the git pushes) per app node, peak
RSS; the CPU per host is over the hosts each command works on. The hosts are namespaces of this machine, so their own work (git, the venv's links, gunicorn's boot)
queues on its cores: the wall time at 24 nodes is this machine's, the fab process's CPU is what a real
control machine would spend.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import yaml

from common import ROOT, fab, load_average, machine, private_sandbox, table
from deploy import code_change

sys.path.insert(0, str(ROOT))
from tests.e2e.demo import demo_repo  # noqa: E402  (after the path)

QUICK = ("quick-update", "--component", "web", "--no-deps", "--no-upgrade-django", "--yes")


def figures(runs: list, hosts: int) -> str:
    secs, cpu = [r.seconds for r in runs], statistics.median(r.cpu_seconds for r in runs)
    return (f"{statistics.median(secs):.2f} s ({min(secs):.2f}-{max(secs):.2f}); fab {cpu:.2f} CPU-s, "
            f"{cpu / hosts * 1000:.0f} ms per host ({hosts}); peak RSS {max(r.peak_rss_mib for r in runs):.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1,24", help="app node counts, growing (default 1,24)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each command per count (default 3)")
    ap.add_argument("--sandbox", type=int, default=None, help="use test sandbox N's names (default: the bench's own)")
    args = ap.parse_args()
    rows, loads = [], []
    with private_sandbox(args.sandbox) as sb:
        repo = demo_repo(sb.tmp / "demo-app", "BENCH_SESSION")
        roles = sb.roles("bench-scale", roles=["proxy", "app", "db"], repo=repo)
        for k, nodes in enumerate(int(x) for x in args.nodes.split(",")):
            data = yaml.safe_load(roles.read_text())
            data["roles"]["app"]["count"] = nodes
            roles.write_text(yaml.safe_dump(data, sort_keys=False))
            grown = fab(sb.env, "whip-up-full-system", "--config", str(roles))
            rows.append((f"{nodes} app node(s): whip-up-full-system to this count", f"{grown.seconds:.1f} s"))
            noop, quick = [], []
            for n in range(args.runs):
                loads.append(load_average())
                noop.append(fab(sb.env, "configure", "--config", str(roles)))
                code_change(repo, 100 * k + n)
                quick.append(fab(sb.env, QUICK[0], "--config", str(roles), *QUICK[1:]))
            rows.append((f"{nodes} app node(s): configure, no-op (every host)", figures(noop, nodes + 2)))
            rows.append((f"{nodes} app node(s): quick-update, code only (the app nodes and the proxy)",
                         figures(quick, nodes + 1)))
            print("\n".join(f"{a}: {b}" for a, b in rows[-3:]), flush=True)
    rows.append(("load average before each run", f"{min(loads)}-{max(loads)}"))
    print(f"=== all figures\nmachine: {machine()}\n\n" + table("the fab process as the cluster grows", rows))


if __name__ == "__main__":
    main()
