"""fab manage | logs | ssh: a Django command on the app, the logs of every node, a shell on one node.

Thin tasks (`cluster_task`: roles.yaml loaded first, errors one non-zero exit): the nodes come from the
cloud, the commands from `build`, the local I/O from `streams`.
"""
from __future__ import annotations

import os
import shlex
import sys
import threading

from invoke import Exit

from .. import flags
from ..boundary import cluster_task
from ..cloud import open_cloud
from ..config import Config
from ..deploy import commands
from ..deploy.manage import manage as manage_command
from ..deploy.releases import parse_state
from ..deploy.source import git_ssh_command
from ..layout import Layout
from ..nodes import Node, connect_address, find_nodes
from ..remote import HostFailures, RemoteError, on_hosts, run
from ..ssh import NotInSandbox, check_sandbox_route, connect
from ..state import known_hosts_path
from . import build
from .build import CommandError
from .executor import remainder, takes_remainder
from .streams import Prefixer, StdinFeed, follow_all

ERRORS = (RemoteError, HostFailures, NotInSandbox)


def _nodes(cfg: Config) -> list[Node]:
    return find_nodes(open_cloud(cfg.cluster.target, cfg.cluster.region).client("ec2"), cfg.cluster.name)


def _manage_node(cfg: Config, nodes: list[Node]) -> Node:
    """App node 0, or worker node 0 in a cluster without app nodes."""
    role = "app" if any(n.role == "app" for n in nodes) else "worker"
    return build.pick_node(nodes, role, 0, cfg.cluster.name)


def _current_release(conn, layout: Layout, node: Node) -> str:
    st = parse_state(run(conn, commands.state(layout), step="read state").stdout)
    if not st.configured:
        raise CommandError(f"{node.name}: {layout.root} does not exist: run fab configure, then fab deploy")
    if st.current is None:
        raise CommandError(build.no_release(node))
    return st.current


def _stdin(forwarded: tuple[str, ...], pty: bool):
    """What the remote command reads: the terminal itself (pty), else the forwarded values, then piped
    stdin (none after the values when stdin is a terminal: the values are all it gets)."""
    if pty:
        return sys.stdin
    fd = None
    if sys.stdin is not None and not sys.stdin.isatty():
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError):
            fd = None
    return StdinFeed(build.env_payload(forwarded, os.environ), fd)


@takes_remainder
@cluster_task(help={"env": "forward this local environment variable's value (on stdin, never argv); repeatable"},
              errors=ERRORS, iterable=["env"])
def manage(c, cfg: Config, env=None):
    """Run a Django management command on app node 0 in the current release: fab manage -- check --deploy."""
    args = remainder(c)
    if not args:
        raise CommandError("fab manage: give the command after `--`, e.g. fab manage -- check --deploy")
    forwarded = build.env_names(env or (), os.environ)
    node = _manage_node(cfg, _nodes(cfg))
    layout = Layout.of(cfg)
    conn = connect(cfg, node)
    try:
        release = _current_release(conn, layout, node)
        pty = build.use_pty(sys.stdin is not None and sys.stdin.isatty(), forwarded)
        cmd = manage_command(layout, release, args, attached=True, stdin_env=forwarded)
        result = conn.run(cmd, pty=pty, warn=True, hide=False, in_stream=_stdin(forwarded, pty))
    finally:
        conn.close()
    if result.exited == -1:
        raise Exit(f"{node.name}: the SSH connection ended before the command's exit status came", code=255)
    if result.exited != 0:
        raise Exit(code=result.exited)


def _log_nodes(cfg: Config, roles: tuple[str, ...]) -> tuple[list[Node], list[Node]]:
    """(running, not running) nodes of `roles`."""
    nodes = [n for n in _nodes(cfg) if n.role in roles]
    if not nodes:
        raise CommandError(f"cluster {cfg.cluster.name} has no {' or '.join(roles)} node (fab provision)")
    return [n for n in nodes if n.state == "running"], [n for n in nodes if n.state != "running"]


def _tail(cfg: Config, node: Node, files, lines: int):
    conn = connect(cfg, node)
    try:
        return run(conn, build.logs_command(files, lines, False), step="tail the logs", check=False)
    finally:
        conn.close()


def _show(cfg: Config, layout: Layout, nodes: list[Node], program, lines: int) -> list[str]:
    """Each node's last lines, node after node; a node whose tail fails shows what it said."""
    files = {n.name: build.log_files(layout, n.role, program) for n in nodes}
    failed = []
    for o in on_hosts(nodes, lambda n: _tail(cfg, n, files[n.name], lines)):
        out, err = (o.value.stdout, o.value.stderr) if o.ok else ("", f"error: {o.message}")
        if out:
            print("\n".join(build.prefixed(o.node.name, out)), flush=True)
        if err:
            print("\n".join(build.prefixed(o.node.name, err)), file=sys.stderr, flush=True)
        if not o.ok or o.value.exited != 0:
            failed.append(o.node.name)
    return failed


def _follow(cfg: Config, layout: Layout, nodes: list[Node], program, lines: int) -> list[str]:
    stop, conns = threading.Event(), []

    def reader(node: Node):
        def read(out: Prefixer):
            conn = connect(cfg, node)
            conns.append(conn)
            cmd = build.logs_command(build.log_files(layout, node.role, program), lines, True)
            result = conn.run(cmd, hide=False, warn=True, pty=False, in_stream=False, out_stream=out,
                              err_stream=out)
            if not stop.is_set():
                raise CommandError(f"tail ended (exit {result.exited})")
        return node.name, read

    try:
        return list(follow_all([reader(n) for n in nodes], sys.stdout, sys.stderr, stop))
    except KeyboardInterrupt:
        stop.set()
        return []
    finally:
        stop.set()
        for conn in list(conns):
            conn.close()


@cluster_task(help={"role": "only this role's nodes (proxy, app or worker)",
                    "follow": "follow every node's logs at once until Ctrl-C",
                    "lines": "how many last lines of each log (default 10)",
                    "program": "only this program's log: web (gunicorn, app nodes) or worker (celery)"},
              errors=ERRORS)
def logs(c, role=None, follow=False, lines="10", program=None, *, cfg: Config):
    """The app's logs from every node (gunicorn, celery, nginx), each line prefixed by its node."""
    count = flags.count("lines", lines, 0, 100000)
    roles = build.log_roles(role, program)
    layout = Layout.of(cfg)
    running, stopped = _log_nodes(cfg, roles)
    running = [n for n in running if build.log_files(layout, n.role, program)]
    for n in stopped:
        print(f"[{n.name}] error: {n.state}, not running", file=sys.stderr)
    failed = (_follow if follow else _show)(cfg, layout, running, program, count)
    if failed or stopped:
        raise Exit(f"logs: no logs from {', '.join(failed + [n.name for n in stopped])}", code=1)


@takes_remainder
@cluster_task(help={"role": "the node's role (proxy, app, db, worker)", "n": "the node's index (default 0)"},
              errors=ERRORS, positional=["role"])
def ssh(c, role, n="0", *, cfg: Config):
    """A shell on node N (default 0) of ROLE with whipup's key and pinned host key: fab ssh app [-n 1] [-- CMD].

    (invoke has no optional positional arguments: N is `-n N`.)"""
    node = build.pick_node(_nodes(cfg), role, build.node_index(n), cfg.cluster.name)
    address = connect_address(cfg, node)
    if cfg.cluster.target == "sandbox":
        check_sandbox_route(address)
    if not known_hosts_path(cfg).is_file():
        raise CommandError(f"{known_hosts_path(cfg)}: missing; run `fab provision` to write it")
    argv = build.ssh_argv(shlex.split(git_ssh_command(cfg)), cfg.cluster.ssh.user, address, remainder(c))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


__all__ = ["manage", "logs", "ssh"]
