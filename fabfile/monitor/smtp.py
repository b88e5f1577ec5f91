"""The monitor's SMTP password (roles.yaml monitor.email.password_file) on the monitor node.

Alertmanager reads it from its own file (`smtp_auth_password_file`, Alertmanager 0.25 and later: Debian 12
and 13), so alertmanager.yml, a template whose diffs configure prints, never holds it. The password goes
from the file on this machine to the node on stdin, written 0640 root:prometheus only when it differs (cmp
on the node: no hash of it travels or is printed). Alertmanager reads the file at each notification, so a
change needs no restart (a restart would drop its alerts in memory: a resolution Prometheus sent before it
sent the alert again would never be told). Run after configure (`fab configure`, whip-up), as the nightly
backup job is.
"""
from __future__ import annotations

from ..remote import install_stdin, run
from .config import MONITOR_ROLE, enabled
from .context import SMTP_PASSWORD


def install_command(path: str = SMTP_PASSWORD, group: str = "prometheus") -> str:
    """stdin to `path` (0640 root:`group`) when it differs; prints changed or unchanged."""
    return install_stdin(path, "0640", group)


def ensure_all(cfg, nodes, out) -> None:
    """The password on every running monitor node (nothing without a monitor or an SMTP login)."""
    email = cfg.monitor.email
    if not enabled(cfg) or email is None or email.password_file is None:
        return
    from ..ssh import connect

    secret = email.password_file.read_text(encoding="utf-8").strip()     # no newline: Alertmanager before 0.27
                                                                         # would send it as part of the password
    for node in (n for n in nodes if n.role == MONITOR_ROLE and n.state == "running"):
        conn = connect(cfg, node)
        try:
            done = run(conn, install_command(), step="install the SMTP password", stdin=secret).stdout.strip()
        finally:
            conn.close()
        out(f"[{node.name}] monitor: SMTP password for {email.username}: "
            f"{'changed' if done == 'changed' else 'already ok'}")
