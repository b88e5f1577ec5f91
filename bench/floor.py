"""The no-op floor (issue 16): whole-process figures of a no-op `fab configure`, `fab whip-up-full-system` and
`fab quick-update` (nothing to deploy) on the demo's 3 hosts (proxy, app, db), timed from outside.

Run as root from the repository root:  .venv/bin/python bench/floor.py [--runs 5] [--sandbox N] [--baseline DIR]

Per command: the median wall time of --runs runs, the `fab` process's CPU-seconds (user + system, its
children included) and peak RSS, and the machine's load average; then `fab --list` (Python, fabric and
the fabfile's imports, no task) as the part no task can avoid. The no-op configure runs twice: as a user
re-running it within a minute (the saved node list trusted as it is) and with WHIPUP_NODES_TTL=0 (the cloud
asked alongside). --baseline DIR (another checkout, with its .venv): a second cluster made and run by that
checkout's fab, every command alternating between the two.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import ROOT, fab, load_average, machine, private_sandbox, table

sys.path.insert(0, str(ROOT))
from tests.e2e.demo import demo_repo  # noqa: E402  (after the path)


def figures(runs: list) -> str:
    secs = [r.seconds for r in runs]
    return (f"{statistics.median(secs):.2f} s ({min(secs):.2f}-{max(secs):.2f}), "
            f"fab {statistics.median(r.cpu_seconds for r in runs):.2f} CPU-s, "
            f"{max(r.peak_rss_mib for r in runs):.0f} MiB")


COMMANDS = {"configure, no-op (3 hosts; goal <= 0.6 s)": ("configure",),
            # the same with the saved node list never trusted as it is: the cloud asked alongside each run
            "configure, no-op, WHIPUP_NODES_TTL=0 (3 hosts)": ("WHIPUP_NODES_TTL=0", "configure"),
            "quick-update, nothing to deploy (3 hosts)": ("quick-update", "--component", "web", "--no-deps",
                                                          "--no-upgrade-django", "--yes"),
            "whip-up-full-system, no-op (3 hosts)": ("whip-up-full-system",)}


def split_env(argv: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(NAME=VALUE words at the front, as a dict; the rest)."""
    env = dict(w.split("=", 1) for w in argv if "=" in w and w.split("=", 1)[0].isupper())
    return env, argv[len(env):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    ap.add_argument("--sandbox", type=int, default=None, help="use test sandbox N's names (default: the bench's own)")
    ap.add_argument("--baseline", type=Path, default=None, help="another whipup checkout to compare with")
    args = ap.parse_args()
    sides = {"": ROOT} if args.baseline is None else {"": ROOT, " [baseline]": args.baseline}
    rows: list[tuple[str, str]] = []
    with private_sandbox(args.sandbox) as sb:
        clusters = {}
        for label, root in sides.items():
            repo = demo_repo(sb.tmp / f"demo-app{len(clusters)}", "BENCH_SESSION")
            roles = sb.roles(f"bench-floor{len(clusters)}", roles=["proxy", "app", "db"], repo=repo)
            fab(sb.env, "whip-up-full-system", "--config", str(roles), root=root)
            clusters[label] = (roles, root)
        done: dict[str, list] = {name + label: [] for name in COMMANDS for label in sides}
        loads = []
        for n in range(args.runs):                   # interleaved: the machine's load falls on each alike
            for name, argv in COMMANDS.items():
                for label in (list(sides) if n % 2 == 0 else list(reversed(sides))):
                    roles, root = clusters[label]
                    loads.append(load_average())
                    extra, words = split_env(argv)
                    done[name + label].append(fab({**sb.env, **extra}, words[0], "--config", str(roles), *words[1:],
                                                  root=root))
        for label, root in sides.items():
            done["fab --list (Python + imports, no task)" + label] = [fab(sb.env, "--list", root=root)
                                                                      for _ in range(args.runs)]
        rows += [(name, figures(runs)) for name, runs in done.items()]
        rows.append(("load average during the runs", f"{min(loads)}-{max(loads)}"))
        print(done["configure, no-op (3 hosts; goal <= 0.6 s)"][-1].stdout[-1500:])
    print(f"=== all figures\nmachine: {machine()}\n\n" + table("the no-op floor, 3-host demo", rows))


if __name__ == "__main__":
    main()
