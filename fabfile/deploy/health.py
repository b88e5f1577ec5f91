"""Is a release healthy: /health before any traffic (in the release, Django's test client) and the gate
after the switch (through gunicorn, from the proxy, the path nginx takes); the app log for the error."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from ..layout import WEB_PORT
from ..remote import run
from . import commands, manage
from .cluster import Cluster, Member, each
from .errors import PreviousServes, Unhealthy

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


def probe(cl: Cluster, m: Member, timeout: float = 3) -> Probe:
    """GET /health of app node `m`, from proxy node 0 (the path nginx takes) or from the node itself."""
    via, path = (cl.proxies[0] if cl.proxies else m), cl.cfg.app.health_path
    r = run(via.conn, commands.health(m.node.private_ip, WEB_PORT, timeout, path), step="health check",
            check=False, timeout=timeout + 5)
    text = (r.stdout or "").rstrip("\n")
    body, _, last = text.rpartition("\n")
    code, _, location = last.partition(" ")
    if not code.isdigit():
        body, code, location = text, "000", ""
    if code == "000":
        body = (r.stderr or "").strip() or body
    return Probe(code, body, location.strip(), path)


def before_traffic(cl: Cluster, apps: list[Member], release: str) -> None:
    """Every app node's new release answers /health with 200 while the previous one still serves: a
    release that fails it never receives a request (the gate after the switch stays, for what only shows
    under gunicorn)."""
    def one(m: Member) -> None:
        host, path = f"{m.node.private_ip}:{WEB_PORT}", cl.cfg.app.health_path
        r = run(m.conn, manage.python_stdin(cl.layout, release, [host, path]), step=f"{path} before traffic",
                stdin=manage.script("health_check"), check=False, timeout=120)
        found = json_last_line(r.stdout or "")
        p = Probe(str(found.get("code", "000")), str(found.get("body", "")), str(found.get("location", "")), path)
        if r.exited == 0 and p.healthy(release):
            cl.progress(m.name, "health", f"200 from release {release} before any traffic")
            return
        output = ((r.stderr or "") + "\n" + (r.stdout or "")).strip().splitlines()
        log = [line for line in output if line.strip() and not line.startswith('{"code"')][-20:]
        why = p.why(release) if found else f"could not be asked (exit {r.exited})"
        raise PreviousServes(f"{path} of release {release} on {host} {why}\n"
                             "last lines of its output:\n  " + ("\n  ".join(log) or "(empty)") + "\n"
                             "it never received traffic: the previous release keeps serving")

    each(apps, one, "health check before traffic")


def gate(cl: Cluster, release: str | None, timeout: float, members: list[Member] | None = None) -> None:
    """Every app node (or `members`) answers /health with 200 from `release` within `timeout` seconds;
    otherwise Unhealthy with the last answer and the app log's last lines."""
    members = cl.apps if members is None else members
    deadline = time.monotonic() + timeout

    def one(m: Member) -> float:
        start = time.monotonic()
        while True:
            last = probe(cl, m)
            if last.healthy(release):
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_POLL)
        tail = app_log_tail(cl, m)
        raise Unhealthy(f"{last.path} on {m.node.private_ip}:{WEB_PORT} not healthy within {timeout:g} s; last "
                        f"{last.why(release)}\n  last lines of the {cl.layout.web_program} log:\n    "
                        + tail.replace("\n", "\n    "))

    waited = each(members, one, "health check")
    for name, secs in waited.items():
        cl.progress(name, "health", f"200 from release {release} after {secs:.1f} s" if release else "200")


def app_log_tail(cl: Cluster, m: Member, lines: int = 20) -> str:
    """The last lines of gunicorn's log on `m`, without access-log lines (the probes would crowd it)."""
    log = run(m.conn, commands.program_log(cl.layout, cl.layout.web_program, 30000), step="app log", check=False)
    text = ((log.stdout or "") + (log.stderr or "")).strip()
    kept = [line for line in text.splitlines() if not _ACCESS_LINE.match(line)]
    return "\n".join(kept[-lines:]) or "(empty)"
