"""Peers side by side (issue 16): a no-op converge by whipup, pyinfra and Ansible (tuned, and its defaults) of
the same desired state, on the 3-host demo and on 1, 8 and 20 light hosts, timed from outside (20: the local
cloud's account reports max-instances 20, and provision's preflight refuses more, so not 24).

Run as root from the repository root:  .venv/bin/python bench/peers.py [--runs 3] [--sandbox 21] [--sizes 1,8,24]

pyinfra and ansible-core are installed from the package registry into venvs of their own (cached in
~/.cache/whipup-bench/peers/). For every cluster, whipup's own plan of each host (bench/peers_state.py) is
rendered as a pyinfra deploy and as an Ansible playbook (bench/peers_render.py): the same packages, files
(content, owner, group, mode), the nginx site link, removals and services. Before timing, each tool must hold:
no change on the converged cluster (and whipup none after the peers ran: they left its state), then, after
one managed file is altered on one host, the same count of changes (the file, and its service's reload
where the file notifies one) and the file's content back. Then the four are run alternately (A B C D,
B C D A, ...): the median wall time of --runs runs (min-max), each process's CPU-seconds (children included)
and peak RSS, and the machine's load average. Ansible tuned: pipelining, ControlPersist, forks >= hosts, no
fact gathering; Ansible default: its defaults (5 forks, facts gathered) but for the cluster's SSH login.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from common import ROOT, fab, load_average, machine, private_sandbox
from peers_render import ansible_files, pyinfra_files, write
from peers_state import whipup_hosts
from peers_tools import Peer, timed, version, whipup_changes

sys.path.insert(0, str(ROOT))
from tests.e2e.demo import demo_repo  # noqa: E402  (after the path)

PEERS = (Peer("pyinfra", "pyinfra", "pyinfra"), Peer("ansible tuned", "ansible", "ansible-tuned"),
         Peer("ansible default", "ansible", "ansible-default"))
LABELS = ("whipup",) + tuple(p.label for p in PEERS)
LIGHT_TEMPLATES = {
    "etc/whipup-light/node.conf.j2": "# {{ cluster.name }}: {{ node.name }} ({{ node.private_ip }})\n"
                                     "peers = {% for n in nodes.light %}{{ n.private_ip }} {% endfor %}\n",
    "etc/whipup-light/secret.conf.j2": "# readable by www-data only\nnode_index = {{ node.index }}\n",
}
LIGHT_ROLE = {"count": 1, "instance_type": "t3.micro", "root_volume_gb": 8, "elastic_ip": False,
              "termination_protection": False, "ports": [], "packages": ["procps", "sudo"],
              "templates": [{"src": "etc/whipup-light/node.conf.j2"},
                            {"src": "etc/whipup-light/secret.conf.j2", "owner": "root:www-data", "mode": "0640",
                             "notify": "ssh", "action": "reload"}],
              "services": ["ssh"]}


def light_roles(sb, count: int) -> Path:
    """roles.yaml of the light cluster: one role of `count` hosts, image packages, two small templates."""
    templates = sb.tmp / "light-templates"
    for rel, text in LIGHT_TEMPLATES.items():
        (templates / rel).parent.mkdir(parents=True, exist_ok=True)
        (templates / rel).write_text(text)
    path = sb.roles("peers-light", roles=["proxy"])
    data = yaml.safe_load(path.read_text())
    data["packages"] = []
    data["configure"]["templates_dir"] = str(templates)
    data["roles"] = {"light": dict(LIGHT_ROLE, count=count)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def render(config: Path, env: dict, root: Path):
    """The run dirs of the three peers for the cluster of `config`, from whipup's plan; its hosts and ssh."""
    hosts, ssh = whipup_hosts(config, env)
    write(root / "pyinfra", pyinfra_files(hosts, ssh, root / "pyinfra"))
    for tuned, sub in ((True, "ansible-tuned"), (False, "ansible-default")):
        write(root / sub, ansible_files(hosts, ssh, root / sub, tuned=tuned))
    return hosts, ssh


def converge(label: str, sb, config: Path, root: Path, n_hosts: int):
    """One converge by `label`: (its Run, the changes it reports)."""
    if label == "whipup":      # like bench/common.fab, through the launcher (peers_tools.LAUNCH)
        run = timed([sys.executable, "-m", "fabric", "configure", "--config", str(config)], cwd=ROOT, env=sb.env)
        return run, whipup_changes(run)
    peer = next(p for p in PEERS if p.label == label)
    run = peer.run(root, n_hosts)
    return run, peer.changes(run)


def on_host(ssh, host, command: str) -> str:
    """`command` as root on `host`, over SSH with the cluster's key and pinned known_hosts."""
    argv = ["ssh", "-i", str(ssh.key), "-o", f"UserKnownHostsFile={ssh.known_hosts}", "-o",
            "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            f"{ssh.user}@{host.address}", "sudo sh -c " + shlex.quote(command)]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def altered_file(hosts):
    """(host, file) to alter: a file that notifies nothing if there is one, else the proxy's nginx site."""
    files = [(h, f) for h in hosts for f in h.want.files]
    quiet = [(h, f) for h, f in files if not f.notify]
    return (quiet or [(h, f) for h, f in files if f.notify == "nginx"] or files)[0]


def checks(sb, config: Path, root: Path, hosts, ssh, name: str, labels: tuple[str, ...]) -> list[str]:
    """The checks before timing (SystemExit when a tool does not hold); what passed, as lines."""
    n, done = len(hosts), []
    primed = {label: converge(label, sb, config, root, n)[1] for label in labels[1:]}   # a first run: prerequisites
    done.append(f"{name}: first runs of the peers changed {primed}")
    print(done[-1], flush=True)
    for label in labels:
        changes = converge(label, sb, config, root, n)[1]
        if changes:
            raise SystemExit(f"{name}: {label} reports {changes} change(s) on the converged cluster")
    done.append(f"{name}: no change on the converged cluster: " + ", ".join(labels))
    print(done[-1], flush=True)
    host, f = altered_file(hosts)
    expected = 2 if f.notify else 1
    for label in labels:
        on_host(ssh, host, f"echo '# altered by bench/peers.py' >> {shlex.quote(f.path)}")
        changes = converge(label, sb, config, root, n)[1]
        sha = on_host(ssh, host, f"sha256sum {shlex.quote(f.path)}").split()[0]
        if changes != expected or sha != f.sha256:
            raise SystemExit(f"{name}: {f.path} altered on {host.name}: {label} reports {changes} change(s), "
                             f"not {expected}; content {'back' if sha == f.sha256 else 'NOT back'}")
    done.append(f"{name}: {f.path} altered on {host.name}: {expected} change(s) "
                f"({'the file and its ' + f.notify + ' ' + f.action if f.notify else 'the file'}) "
                f"and the content back, by each of " + ", ".join(labels))
    print(done[-1], flush=True)
    return done


def alternate(sb, config: Path, root: Path, n_hosts: int, runs: int, labels: tuple[str, ...]) -> tuple[dict, list[str]]:
    """Every label `runs` times, alternating (A B C D, B C D A, ...): {label: [Run]}, the load averages."""
    done: dict[str, list] = {label: [] for label in labels}
    loads = []
    for i in range(runs):
        for label in labels[i % len(labels):] + labels[:i % len(labels)]:
            loads.append(load_average())
            run, changes = converge(label, sb, config, root, n_hosts)
            if changes:
                raise SystemExit(f"{label}: {changes} change(s) in a timed no-op run")
            done[label].append(run)
    return done, loads


def median(runs) -> float:
    return statistics.median(r.seconds for r in runs)


def cell(runs) -> str:
    secs = [r.seconds for r in runs]
    return (f"{statistics.median(secs):.2f} s ({min(secs):.2f}-{max(secs):.2f}); "
            f"{statistics.median(r.cpu_seconds for r in runs):.2f} CPU-s; {max(r.peak_rss_mib for r in runs):.0f} MiB")


def table(results: dict) -> str:
    """The markdown table: per cluster, each tool's figures and the ratios to whipup's median."""
    head = ["cluster", *LABELS, *(f"{p.label} / whipup" for p in PEERS), "load average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (done, loads) in results.items():
        w = median(done["whipup"])
        ratios = [f"{median(done[p.label]) / w:.1f}x" if p.label in done else "-" for p in PEERS]
        lines.append("| " + " | ".join([name, *(cell(done[label]) if label in done else "not run"
                                                for label in LABELS), *ratios,
                                        f"{min(loads, key=float)}-{max(loads, key=float)}"]) + " |")
    return "\n".join(lines)


def whipup_lines(results: dict) -> list[str]:
    """whipup's own CPU-seconds per host and the peak RSS of `fab`, per cluster."""
    out = []
    for name, (done, _) in results.items():
        runs, hosts = done["whipup"], int(name.split()[0])
        out.append(f"whipup on {name}: fab {statistics.median(r.cpu_seconds for r in runs) / hosts:.3f} CPU-s "
                   f"per host, peak RSS {max(r.peak_rss_mib for r in runs):.0f} MiB")
    return out


def measure(sb, name: str, config: Path, runs: int, lines: list[str], results: dict, ansible_hosts: int) -> None:
    """Render, check, then time the tools on one cluster (Ansible only up to `ansible_hosts` hosts)."""
    root = sb.tmp / ("run-" + name.split()[0] + ("-demo" if "demo" in name else ""))   # short: ssh control sockets
    hosts, ssh = render(config, sb.env, root)
    labels = LABELS if len(hosts) <= ansible_hosts else LABELS[:2]
    lines += checks(sb, config, root, hosts, ssh, name, labels)
    results[name] = alternate(sb, config, root, len(hosts), runs, labels)
    print(f"{name}: {table({name: results[name]}).splitlines()[-1]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool per cluster (default 3)")
    ap.add_argument("--sandbox", type=int, default=21, help="use test sandbox N's names (default 21)")
    ap.add_argument("--sizes", default="1,8,24", help="light clusters' host counts (default 1,8,24)")
    ap.add_argument("--no-demo", action="store_true", help="only the light clusters")
    ap.add_argument("--ansible-hosts", type=int, default=24, help="Ansible only on clusters of at most this many "
                    "hosts (default 24: every one)")
    args = ap.parse_args()
    versions = [version("pyinfra"), version("ansible")]
    print("peers: " + ", ".join(versions), flush=True)
    lines: list[str] = []
    results: dict = {}
    with private_sandbox(args.sandbox) as sb:
        if not args.no_demo:
            repo = demo_repo(sb.tmp / "demo-app", "BENCH_SESSION")
            demo = sb.roles("peers-demo", roles=["proxy", "app", "db"], repo=repo)
            fab(sb.env, "whip-up-full-system", "--config", str(demo))
            measure(sb, "3 hosts (demo: proxy, app, db)", demo, args.runs, lines, results, args.ansible_hosts)
        for count in [int(s) for s in args.sizes.split(",") if s]:
            light = light_roles(sb, count)
            fab(sb.env, "provision", "--config", str(light))
            fab(sb.env, "configure", "--config", str(light))
            measure(sb, f"{count} light host{'s' if count > 1 else ''}", light, args.runs, lines, results,
                    args.ansible_hosts)
    print(f"=== all figures\nmachine: {machine()}\npeers: {', '.join(versions)}\n\nchecks passed:")
    print("\n".join("- " + line for line in lines))
    print("\n## peers side by side, no-op converge (median of alternating runs)\n\n" + table(results))
    print("\n" + "\n".join(whipup_lines(results)))


if __name__ == "__main__":
    main()
