"""Is a release healthy: the gate after the switch (through each app node's live gunicorn slot, from the
proxy, the path nginx takes) and the answer of a slot booted before any traffic (`switchover.boot`); the
slot's log for the error."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from ..layout import WEB_PORT, slot_port
from ..remote import run
from . import commands
from .cluster import Cluster, Member, each
from .errors import Unhealthy

HEALTH_POLL = 0.05        # between two /health probes of a node (each one an SSH command to the proxy, ~15 ms)
_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^]]+\] "[A-Z]+ ')


def redirect_cause(location: str, path: str) -> str:
    """The likely reason a health path answers with a redirect to `location`."""
    from urllib.parse import urlsplit

    target = urlsplit(location)
    if target.scheme == "https":
        return ("the app sends plain HTTP to HTTPS (SECURE_SSL_REDIRECT in its settings) and does not trust the "
                "proxy's X-Forwarded-Proto: keep roles.yaml app.overlay on (it sets SECURE_PROXY_SSL_HEADER and "
                "answers the health path first), or list the path in SECURE_REDIRECT_EXEMPT")
    if target.path == path.rstrip("/") + "/":
        return f"Django's APPEND_SLASH adds a slash: set roles.yaml app.health_path to {path.rstrip('/')}/"
    if "login" in target.path:
        return "the view needs a login: set roles.yaml app.health_path to a view anyone may GET"
    return "set roles.yaml app.health_path to a view that answers 200 (or keep app.overlay on: it adds one)"


@dataclass
class Probe:
    code: str
    body: str
    location: str = ""
    path: str = "/health"

    def release(self) -> str | None:
        """The release id the app's /health body names, if it is JSON with a "release" string."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        value = data.get("release") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def healthy(self, release: str | None) -> bool:
        """200, from `release` (an app that does not report a release id is judged by its status alone)."""
        if self.code != "200":
            return False
        served = self.release()
        return release is None or served is None or served == release or not served[:1].isdigit()

    def why(self, release: str | None) -> str:
        served = self.release()
        if self.code[:1] == "3":
            return (f"answered {self.code} with Location: {self.location or '(none)'}; likely cause: "
                    + redirect_cause(self.location, self.path))
        return (f"answered {self.code}" + (f" for release {served}" if served and served != release else "")
                + f": {self.body[:500]}")


def json_last_line(text: str) -> dict:
    """The last line of `text` that is a JSON object ({} when none is): what a remote script printed."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def parse_probe(text: str, stderr: str, path: str) -> Probe:
    """What `commands.health` printed: the body, then `<code> <redirect target>`."""
    text = text.rstrip("\n")
    body, _, last = text.rpartition("\n")
    code, _, location = last.partition(" ")
    if not code.isdigit():
        body, code, location = text, "000", ""
    if code == "000":
        body = stderr.strip() or body
    return Probe(code, body, location.strip(), path)


def probe(cl: Cluster, m: Member, timeout: float = 3, port: int = WEB_PORT) -> Probe:
    """GET the health path of app node `m` on `port`, from proxy node 0 (the path nginx takes) or from the
    node itself."""
    via, path = (cl.proxies[0] if cl.proxies else m), cl.cfg.app.health_path
    r = run(via.conn, commands.health(m.node.private_ip, port, timeout, path), step="health check",
            check=False, timeout=timeout + 5)
    return parse_probe(r.stdout or "", r.stderr or "", path)


def gate(cl: Cluster, release: str | None, timeout: float, members: list[Member] | None = None,
         slots: dict[str, str] | None = None) -> None:
    """Every app node (or `members`) answers /health with 200 from `release` within `timeout` seconds, on
    its live slot's port (`slots`: node -> slot; slot a's port for a node not in it); otherwise Unhealthy
    with the last answer and the slot's log's last lines."""
    members = cl.apps if members is None else members
    slots = slots or {}
    deadline = time.monotonic() + timeout

    def one(m: Member) -> float:
        start, slot = time.monotonic(), slots.get(m.name, "a")
        while True:
            last = probe(cl, m, port=slot_port(slot))
            if last.healthy(release):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_POLL)
        program = cl.layout.slot_program(slot)
        raise Unhealthy(f"{last.path} on {m.node.private_ip}:{slot_port(slot)} not healthy within {timeout:g} s; "
                        f"last {last.why(release)}\n  last lines of the {program} log:\n    "
                        + app_log_tail(cl, m, program).replace("\n", "\n    "))

    waited = each(members, one, "health check")
    for name, secs in waited.items():
        cl.progress(name, "health", f"200 from release {release} after {secs:.1f} s" if release else "200")


def app_log_tail(cl: Cluster, m: Member, program: str, lines: int = 20) -> str:
    """The last lines of a gunicorn slot's log on `m`, without access-log lines (the probes would crowd it)."""
    log = run(m.conn, commands.program_log(cl.layout, program, 30000), step="app log", check=False)
    text = ((log.stdout or "") + (log.stderr or "")).strip()
    kept = [line for line in text.splitlines() if not _ACCESS_LINE.match(line)]
    return "\n".join(kept[-lines:]) or "(empty)"
