"""Cold whip-ups (issue 16): 1 role against the 4 default roles, and 1 app node against 4, from nothing to the
site answering, with the bytes each node took in and the CPU the whole machine spent.

Run as root from the repository root:  .venv/bin/python bench/cold.py [--runs 1] [--sandbox N] [--baseline DIR]

Each shape gets a new cluster (new nodes, a new app tree), `fab whip-up-full-system` timed as a whole process
from outside, then `fab destroy --yes`. Per run: the wall time, whip-up's own marks (provision, configure,
deploy), the CPU-seconds of `fab` and of the whole machine (every host is a namespace of this machine,
so the hosts' dpkg, pip and Django share its cores), and each node's bytes in (its veth's counter on the
bridge side: packages, wheels, the code pushed, SSH). --baseline DIR (another checkout, with its .venv):
every shape is run by both, alternating (A B, then B A), in the same sandbox. The sandbox's package cache
(apt-cacher-ng, fabfile/sandbox/aptcache.py) is emptied before each whip-up, so each cluster fetches its
packages from the mirror once; --warm-apt keeps it.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

from common import ROOT, Run, fab, load_average, machine, private_sandbox, table

sys.path.insert(0, str(ROOT))
from fabfile.sandbox import aptcache, procs  # noqa: E402  (after the path)
from fabfile.sandbox.image import remove_tree  # noqa: E402
from fabfile.sandbox.net import veth_name  # noqa: E402
from fabfile.sandbox.settings import load_settings  # noqa: E402
from tests.e2e.demo import demo_repo  # noqa: E402

SHAPES = {"1 role (app, SQLite)": dict(roles=["app"]),
          "4 default roles": dict(roles=["proxy", "app", "db", "worker"]),
          "4 default roles, 4 app nodes": dict(roles=["proxy", "app", "db", "worker"], counts={"app": 4})}
RATIOS = (("4 default roles / 1 role (goal <= 1.3)", "4 default roles", "1 role (app, SQLite)"),
          ("4 app nodes / 1 app node (goal <= 1.3)", "4 default roles, 4 app nodes", "4 default roles"))


def bytes_in(sb, cluster: str) -> dict[str, int]:
    """{node name: bytes it received so far}: the bridge side's transmit counter of its veth."""
    found = sb.ec2().describe_instances(Filters=[{"Name": "tag:whipup:cluster", "Values": [cluster]},
                                                 {"Name": "instance-state-name", "Values": ["running"]}])
    counts = {}
    for res in found["Reservations"]:
        for inst in res["Instances"]:
            name = next(t["Value"] for t in inst.get("Tags", []) if t["Key"] == "Name")
            path = Path("/sys/class/net") / veth_name(sb.env["WHIPUP_SANDBOX_BRIDGE"], inst["InstanceId"])
            counts[name] = int((path / "statistics" / "tx_bytes").read_text())
    return dict(sorted(counts.items()))


def marks(stdout: str) -> str:
    """whip-up's closing line: `done in N s (provision at .., configure at .., deploy at ..)`."""
    found = re.search(r"^done in .*$", stdout, re.M)
    return found.group(0) if found else "?"


def empty_apt_cache(sb) -> None:
    """The sandbox's package cache (fabfile/sandbox/aptcache.py) stopped, emptied and started again by
    `fab sandbox.up`: every whip-up fetches its cluster's packages from the mirror, once."""
    settings = load_settings(sb.env)
    procs.stop_pidfile(aptcache.pidfile(settings))
    if settings.apt_cache_dir.exists():
        remove_tree(settings.apt_cache_dir)
    fab(sb.env, "sandbox.up")


def one(sb, shape: str, n: int, root: Path, warm: bool = False) -> tuple[Run, dict[str, int], str]:
    """A cold whip-up of `shape` by the checkout `root`, its nodes' bytes in, then the cluster destroyed.
    Unless `warm`, the sandbox's package cache starts empty."""
    name = f"cold{n}"
    if not warm:
        empty_apt_cache(sb)
    repo = demo_repo(sb.tmp / f"app-{name}", "BENCH_SESSION")
    roles = sb.roles(name, repo=repo, **SHAPES[shape])
    run = fab(sb.env, "whip-up-full-system", "--config", str(roles), root=root)
    received = bytes_in(sb, name)
    if not warm:      # what the cache fetched from the mirror: the cluster's packages, once
        debs = load_settings(sb.env).apt_cache_dir.rglob("*.deb")
        received["mirror-.debs the apt cache fetched from the mirror"] = sum(f.stat().st_size for f in debs)
    fab(sb.env, "destroy", "--yes", "--config", str(roles), root=root)
    return run, received, marks(run.stdout)


def describe(runs: list[tuple[Run, dict[str, int], str]]) -> str:
    secs = [r.seconds for r, _, _ in runs]
    run, received, done = runs[-1]
    mib = ", ".join(f"{k.split('-', 1)[1]} {v / 2**20:.1f}" for k, v in received.items())
    return (f"{statistics.median(secs):.1f} s ({min(secs):.1f}-{max(secs):.1f}); fab "
            f"{statistics.median(r.cpu_seconds for r, _, _ in runs):.1f} CPU-s, machine "
            f"{statistics.median(r.machine_busy for r, _, _ in runs):.0f} CPU-s; MiB in: {mib}; last: {done}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="runs of each shape (default 1)")
    ap.add_argument("--sandbox", type=int, default=None, help="use test sandbox N's names (default: the bench's own)")
    ap.add_argument("--baseline", type=Path, default=None, help="another whipup checkout to compare with")
    ap.add_argument("--output", type=Path, default=None, help="a directory to keep each whip-up's output in")
    ap.add_argument("--warm-apt", action="store_true",
                    help="keep the sandbox's package cache between whip-ups (default: emptied before each)")
    ap.add_argument("--shapes", default=",".join(str(i) for i in range(len(SHAPES))),
                    help="which shapes, by index (default all: " + "; ".join(SHAPES) + ")")
    args = ap.parse_args()
    shapes = [list(SHAPES)[int(i)] for i in args.shapes.split(",")]
    sides = {"": ROOT} if args.baseline is None else {"": ROOT, " [baseline]": args.baseline}
    done: dict[str, list] = {s + label: [] for s in shapes for label in sides}
    loads, k = [], 0
    with private_sandbox(args.sandbox) as sb:
        for n in range(args.runs):
            for i, shape in enumerate(shapes):           # A B, then B A: the load falls on both alike
                for label in (list(sides) if (n + i) % 2 == 0 else list(reversed(sides))):
                    loads.append(load_average())
                    k += 1
                    done[shape + label].append(one(sb, shape, k, sides[label], args.warm_apt))
                    if args.output is not None:
                        args.output.mkdir(parents=True, exist_ok=True)
                        (args.output / f"{k:02d}-{shape}{label}.txt".replace(" ", "_")).write_text(
                            done[shape + label][-1][0].stdout)
                    print(f"{shape}{label}: {describe(done[shape + label][-1:])}", flush=True)
    rows = [(name, describe(runs)) for name, runs in done.items() if runs]
    for title, top, bottom in RATIOS:
        for label in sides:
            if done.get(top + label) and done.get(bottom + label):
                ratio = (statistics.median(r.seconds for r, _, _ in done[top + label])
                         / statistics.median(r.seconds for r, _, _ in done[bottom + label]))
                rows.append((title + label, f"{ratio:.2f}"))
    rows.append(("load average before each run", f"{min(loads)}-{max(loads)}"))
    print(f"=== all figures\nmachine: {machine()}\n\n" + table("cold whip-up-full-system", rows))


if __name__ == "__main__":
    main()
