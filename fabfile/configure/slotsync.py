"""configure and the gunicorn slots: the proxies' upstream as deploy left it, and a web program change
applied by a slot switch (configure never restarts a slot itself).

- `live_slots`: each running app node's live slot (slots/live), read before the templates are rendered, so
  the upstream file configure writes names the ports deploy switched to (a new app node: slot a's);
- `upstream_files`: that file, on every node whose rendered files include it (the shipped nginx site does);
- `refresh_changed`: after the hosts converged, the app nodes whose web program file changed boot their
  release again in the other slot with it, and switch (`deploy.switchover.refresh`).
"""
from __future__ import annotations

import re
import shlex

from ..layout import Layout, check_slot, slot_port
from ..nodes import Node
from ..remote import on_hosts, run
from ..ssh import connect
from .want import DesiredFile


def live_slot_command(layout: Layout) -> str:
    return f"readlink {shlex.quote(layout.live_slot)} 2>/dev/null; true"


def parse_live_slot(text: str) -> str | None:
    value = text.strip()
    return value if value in ("a", "b") else None


def live_slots(cfg, nodes: list[Node], connect_to=None) -> dict[str, str]:
    """{app node name: its live slot} for the running app nodes that have one (unreachable: none);
    `connect_to`: ssh.connect's stand-in (the run's pooled connections)."""
    layout = Layout.of(cfg)
    apps = [n for n in nodes if n.role == "app" and n.state == "running" and n.private_ip]

    def read(node: Node) -> str | None:
        conn = (connect_to or connect)(cfg, node)
        try:
            return parse_live_slot(run(conn, live_slot_command(layout), step="read the live slot", check=False,
                                       timeout=30).stdout or "")
        finally:
            conn.close()

    found = {o.node.name: o.value for o in on_hosts(apps, read) if o.ok and o.value}
    return found  # type: ignore[return-value]


def includes_upstream(cfg, files: tuple[DesiredFile, ...]) -> bool:
    path = Layout.of(cfg).upstream_file
    return any(re.search(rf"include\s+{re.escape(path)}\s*;", f.content) for f in files)


def upstream_files(cfg, files: tuple[DesiredFile, ...], nodes: list[Node], live: dict[str, str]
                   ) -> tuple[DesiredFile, ...]:
    """`files` plus the upstream file when one of them includes it, notifying what that file notifies."""
    from ..deploy.slots import upstream_text

    layout = Layout.of(cfg)
    including = [f for f in files if includes_upstream(cfg, (f,))]
    if not including or any(f.path == layout.upstream_file for f in files):
        return files
    apps = sorted((n for n in nodes if n.role == "app" and n.private_ip and n.state in ("running", "pending",
                                                                                          "stopped", "stopping")),
                  key=lambda n: (n.index, n.name))
    servers = [(n.name, n.private_ip, slot_port(check_slot(live.get(n.name, "a")))) for n in apps]
    site = including[0]
    text = upstream_text(servers) if servers else "server 127.0.0.1:9 down;  # no app node\n"
    return files + (DesiredFile(layout.upstream_file, text, "root", "root", "0644", notify=site.notify,
                                action="reload", src="(whipup: the live slots of the app nodes)"),)


def web_program_changed(cfg, results) -> list[str]:
    """The app nodes on which this run changed the web slots' program file."""
    layout = Layout.of(cfg)
    path = f"/etc/supervisor/conf.d/{layout.web_program}.conf"
    return [r.name for r in results if r.role == "app" and not r.error and r.plan is not None
            and any(w.file.path == path for w in r.plan.writes)]


def refresh_changed(cfg, ec2, names: list[str], out) -> None:
    """Boot each named app node's release again in its other slot (its new program), then switch."""
    if not names:
        return
    from ..deploy.cluster import gather, open_cluster
    from ..deploy.planning import HEALTH_TIMEOUT
    from ..deploy.switchover import refresh

    cl = open_cluster(cfg, ec2, roles=("proxy", "app"), out=lambda line: print(line, file=out))
    try:
        apps = [m for m in cl.apps if m.name in names]
        states = gather(cl, cl.apps)      # every app node's: the upstream names each one's live slot
        cl.out(f"web program changed on {', '.join(names)}: applied by a slot switch (no restart)")
        refresh(cl, apps, states, HEALTH_TIMEOUT, "changed program")
    finally:
        cl.close()
