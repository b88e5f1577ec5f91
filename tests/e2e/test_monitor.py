"""The monitor node end to end on the local cloud (issue 15, item 5).

A private sandbox (#17); a cluster of proxy, app, db and monitor (no worker) whose roles.yaml turns the monitor
role on with its one line and points `monitor.webhooks` at a test HTTP server listening on this sandbox's bridge
address (the only address the hosts reach this machine at), with `monitor.recover: true`.

- Prometheus on the monitor node scrapes every node's node_exporter and probes the site, the app node's slots
  and PostgreSQL: `fab status` shows each node healthy, as the monitor sees it;
- gunicorn stopped on the app node (both slots, through supervisor, so nothing restarts it): the AppUnhealthy
  alert reaches the webhook within a bounded wait (the time it took is printed), and by email through an SMTP
  relay on the bridge that wants a login (roles.yaml's username and password_file);
- the app node terminated: NodeDown reaches the recovery receiver whip-up started, which rebuilds the node with
  no command run here; the site serves again from a new instance (the time it took is printed).
Figures are printed as `MEASURE ...` lines.
"""
from __future__ import annotations

import http.server
import json
import os
import threading
import time

import pytest
import yaml

from fabfile.remote import RemoteError

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import DemoCluster, sandbox_settings

# the test relay's point: a login without TLS, on the sandbox bridge (aiosmtpd warns at each session)
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

SANDBOX = 17
ALERT_WAIT = 240        # bounded wait for an alert (the bar is 60 s: printed, not asserted)
RECOVER_WAIT = 900      # bounded wait for a terminated app node to be rebuilt and serve


class Hooks:
    """The webhook receiver: a test HTTP server on the sandbox bridge address, keeping what Alertmanager posts."""

    def __init__(self, address: str, port: int):
        self.posts: list[tuple[float, dict]] = []
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.posts.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str, since: float) -> list[tuple[float, dict]]:
        return [(t, a) for t, body in self.posts if t >= since for a in body.get("alerts", [])
                if a.get("status") == "firing" and a["labels"].get("alertname") == alertname]

    def firing_now(self) -> list[str]:
        """The alerts the webhook was last told are firing (by fingerprint: a resolved post clears one)."""
        last: dict[str, dict] = {}
        for _, body in self.posts:
            for a in body.get("alerts", []):
                last[a.get("fingerprint") or json.dumps(a["labels"], sort_keys=True)] = a
        return sorted(f"{a['labels'].get('alertname')} {a['labels'].get('node', '')}".strip()
                      for a in last.values() if a.get("status") == "firing")

    def wait(self, alertname: str, since: float, timeout: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while not (found := self.firing(alertname, since)):
            assert time.monotonic() < deadline, \
                f"no firing {alertname} at the webhook within {timeout} s: {[b for _, b in self.posts][-3:]}"
            time.sleep(0.5)
        return found[0]


class Mail:
    """An SMTP relay that wants a login (aiosmtpd, AUTH LOGIN, on the sandbox bridge address): what the
    monitor's Alertmanager sends by email, and whether it logged in with the password roles.yaml names."""

    def __init__(self, address: str, port: int, username: str, password: str):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.username, self.password = username, password
        self.logins: list[tuple[str, bool]] = []
        self.messages: list[tuple[float, str]] = []
        mail = self

        def authenticator(server, session, envelope, mechanism, auth_data):
            login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else str(auth_data.login)
            given = auth_data.password.decode() if isinstance(auth_data.password, bytes) else str(auth_data.password)
            ok = (login, given) == (mail.username, mail.password)
            mail.logins.append((login, ok))
            return AuthResult(success=ok)

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                mail.messages.append((time.monotonic(), envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        class Relay(Controller):
            def factory(self):
                server = super().factory()       # the LOGIN prompts of most relays (aiosmtpd's own are
                server.AuthLoginUsernameChallenge = "Username:"      # "User Name\0", which Alertmanager's
                server.AuthLoginPasswordChallenge = "Password:"      # LOGIN does not take)
                return server

        self.controller = Relay(Handler(), hostname=address, port=port, authenticator=authenticator,
                                auth_required=True, auth_require_tls=False,
                                auth_exclude_mechanism=["PLAIN"])   # Go's PLAIN wants TLS off loopback
        self.controller.start()

    def wait(self, needle: str, since: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not (found := [t for t, text in self.messages if t >= since and needle in text]):
            assert time.monotonic() < deadline, \
                f"no mail with {needle!r} within {timeout} s; logins {self.logins}, {len(self.messages)} mails"
            time.sleep(0.5)
        return found[0]


@pytest.fixture(scope="module")
def mon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitor")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):
            bridge = env["WHIPUP_SANDBOX_BRIDGE_ADDRESS"]
            hooks = Hooks(bridge, 9900 + SANDBOX)
            mail = Mail(bridge, 9800 + SANDBOX, "whipup-alerts", "pa55-" + os.urandom(6).hex())
            (tmp / "smtp-password").write_text(mail.password + "\n")
            roles = cluster_roles(tmp, "mon", make_network(env, SANDBOX))
            data = yaml.safe_load(roles.read_text())
            data["roles"]["worker"]["count"] = 0
            data["roles"]["monitor"]["count"] = 1                      # the one line that turns it on
            data["monitor"].update(webhooks=[f"http://{bridge}:{9900 + SANDBOX}/hook"], recover=True,
                                   receiver_port=9700 + SANDBOX,
                                   email={"to": "ops@example.test", "from": "whipup@example.test",
                                          "smarthost": f"{bridge}:{9800 + SANDBOX}", "require_tls": False,
                                          "username": mail.username, "password_file": str(tmp / "smtp-password")})
            roles.write_text(yaml.safe_dump(data, sort_keys=False))
            cl = DemoCluster(env, roles, tmp, "monitor")
            start = time.monotonic()
            out = cl.fab("whip-up-full-system", timeout=2400).stdout
            print(f"\nMEASURE monitor: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            assert "monitor: recovery receiver started" in out, out[-3000:]
            assert f"monitor: SMTP password for {mail.username}: changed" in out, out[-3000:]
            assert mail.password not in out
            cl.load()
            cl.hooks, cl.mail = hooks, mail
            try:
                quiet = wait_calm(cl, ALERT_WAIT)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{monitor_view(cl)}") from None
            print(f"MEASURE monitor: no critical alert for {CALM_FOR} s on end, {quiet:.0f} s after the whip-up")
            yield cl
            cl.fab("destroy", "--yes", check=False)              # stops the receiver too
            hooks.server.shutdown()
            mail.controller.stop()
    finally:
        fab("sandbox.down", env=env, check=False)


CRITICAL = ("SiteDown", "AppUnhealthy", "DbDown", "NodeDown")
CALM_FOR = 20           # > the rules' `for: 10s` + two 5 s evaluations: a probe failing now would be pending


def monitor_api(cl, port: int, path: str) -> dict | list:
    return json.loads(cl.ssh("monitor-0", f"curl -sS -m 5 'http://127.0.0.1:{port}/{path}'"))


def unrest(cl) -> list[str]:
    """The critical alerts anywhere in the chain: pending or firing in Prometheus, active in Alertmanager, or
    last told firing to the webhook."""
    rules = [f"prometheus {a['state']} {a['labels']['alertname']}"
             for a in monitor_api(cl, 9090, "api/v1/alerts")["data"]["alerts"]
             if a["labels"]["alertname"] in CRITICAL]
    manager = [f"alertmanager {a['labels']['alertname']}" for a in monitor_api(cl, 9093, "api/v2/alerts?active=true")
               if a["labels"]["alertname"] in CRITICAL]
    told = [f"webhook {name}" for name in cl.hooks.firing_now() if name.split()[0] in CRITICAL]
    return rules + manager + told


def wait_calm(cl, timeout: float) -> float:
    """Until no critical alert is anywhere in the chain, and none for CALM_FOR seconds on end. A cold whip-up
    has its own (the site, app and db were down until they were built; the monitor's first probes may fail),
    and they may reach the webhook only after the whip-up ends. An alert that fires again before its
    resolution was told (at its group's next interval) is never told again: a test that breaks something
    must start from a calm chain, not from an empty webhook."""
    start = time.monotonic()
    calm_since = None
    while True:
        now, busy = time.monotonic(), unrest(cl)
        calm_since = None if busy else (calm_since or now)
        if calm_since is not None and now - calm_since >= CALM_FOR:
            return now - start
        assert now - start < timeout, f"critical alerts still about after {timeout} s: {busy}"
        time.sleep(2)


def status_rows(cl) -> dict[str, list[str]]:
    out = cl.fab("status").stdout
    section = out.split("health (as ", 1)
    assert len(section) == 2, out
    return {line.split()[0]: line.split(None, 2) for line in section[1].splitlines()[2:] if line.strip()}


def wait_status(cl, node: str, want: str, timeout: float = 90) -> dict:
    """Until `fab status` shows `want` (words, in order, e.g. "health ok none") in `node`'s row: its health
    comes from the last probe, its alerts from the last rule evaluation, a few seconds apart."""
    deadline = time.monotonic() + timeout
    while True:
        rows = status_rows(cl)
        if node in rows and " ".join(want.split()) in " ".join(" ".join(rows[node]).split()):
            return rows
        assert time.monotonic() < deadline, f"fab status: {node} not {want!r} within {timeout} s: {rows}"
        time.sleep(3)


def monitor_view(cl) -> str:
    """What the monitor node saw, for a failure's message: Prometheus's probes and alerts, Alertmanager's
    alerts, and the app node's programs."""
    queries = ["api/v1/query?query=probe_success", "api/v1/query?query=up", "api/v1/alerts"]
    lines = [f"prometheus {q}: " + cl.ssh("monitor-0", f"curl -sS -m 5 'http://127.0.0.1:9090/{q}'", check=False)
             for q in queries]
    lines.append("alertmanager: " + cl.ssh("monitor-0", "curl -sS -m 5 http://127.0.0.1:9093/api/v2/alerts",
                                           check=False))
    lines.append("app-0: " + cl.ssh("app-0", "sudo -n supervisorctl status", check=False))
    lines.append("alertmanager's log: " + cl.ssh(
        "monitor-0", "sudo -n tail -n 25 /var/log/prometheus/prometheus-alertmanager.log", check=False))
    mail = getattr(cl, "mail", None)
    if mail is not None:
        lines.append(f"mail: logins {mail.logins}, {len(mail.messages)} messages")
    hooks = getattr(cl, "hooks", None)
    if hooks is not None:
        lines.append(f"webhook: {len(hooks.posts)} posts: " + "; ".join(
            f"{b.get('status')} {[a['labels'].get('alertname') for a in b.get('alerts', [])]}" for _, b in hooks.posts))
    return "\n".join(lines)


def test_fab_status_shows_every_node_healthy_as_the_monitor_sees_it(mon):
    names = {k: n.name for k, n in mon.nodes.items()}
    rows = wait_status(mon, names["app-0"], "health ok none")
    assert rows[names["app-0"]][2].startswith("up") and "none" in rows[names["app-0"]][2], rows
    assert "site ok" in rows[names["proxy-0"]][2] and "postgres ok" in rows[names["db-0"]][2], rows
    assert set(names.values()) <= set(rows), rows          # node_exporter on every node, the monitor's own too
    for name in names.values():
        assert rows[name][2].startswith("up "), rows


def test_gunicorn_stopped_on_the_app_node_alerts_the_webhook(mon):
    app = f"{mon.cfg.app.name}-web"
    running = [line.split()[0] for line in mon.ssh("app-0", "sudo -n supervisorctl status", check=False).splitlines()
               if line.startswith(f"{app}-") and " RUNNING " in line]
    assert running, "no gunicorn slot runs on app-0"
    since = time.monotonic()
    mon.ssh("app-0", f"sudo -n supervisorctl stop {' '.join(running)}")
    try:
        try:
            arrived, alert = mon.hooks.wait("AppUnhealthy", since, ALERT_WAIT)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{monitor_view(mon)}") from None
        print(f"\nMEASURE monitor: gunicorn stopped -> AppUnhealthy at the webhook in {arrived - since:.1f} s")
        mailed = mon.mail.wait("AppUnhealthy", since, ALERT_WAIT)            # and by email, logged in
        print(f"MEASURE monitor: gunicorn stopped -> AppUnhealthy by email in {mailed - since:.1f} s")
        assert (mon.mail.username, True) in mon.mail.logins and (mon.mail.username, False) not in mon.mail.logins
        assert alert["labels"]["node"] == mon.nodes["app-0"].name and alert["labels"]["role"] == "app"
        wait_status(mon, mon.nodes["app-0"].name, "AppUnhealthy")
    finally:
        mon.ssh("app-0", f"sudo -n supervisorctl start {' '.join(running)}", check=False)
    mon.wait_health(120)


def test_a_terminated_app_node_is_rebuilt_with_no_command_run(mon):
    lost = mon.nodes["app-0"]
    since = time.monotonic()
    mon.ec2.terminate_instances(InstanceIds=[lost.instance_id])
    arrived, alert = mon.hooks.wait("NodeDown", since, ALERT_WAIT)
    print(f"\nMEASURE monitor: app node terminated -> NodeDown at the webhook in {arrived - since:.1f} s")
    assert alert["labels"]["node"] == lost.name
    deadline = time.monotonic() + RECOVER_WAIT
    while True:                       # nothing is run here: the receiver whip-up started does the work
        mon.load()
        new = mon.nodes.get("app-0")
        if new is not None and new.instance_id != lost.instance_id and new.state == "running":
            try:                      # SSH answers (and its host key is pinned) only once provision got that far
                current = mon.ssh("app-0", f"readlink /srv/{mon.cfg.app.name}/current", check=False).strip()
                status = mon.get("/health")[0] if current else None
            except (RemoteError, OSError):
                status = None
            if status == 200:
                break
        assert time.monotonic() < deadline, f"app-0 not rebuilt and serving within {RECOVER_WAIT} s"
        time.sleep(5)
    print(f"MEASURE monitor: app node terminated -> rebuilt and serving in {time.monotonic() - since:.0f} s")
    wait_status(mon, new.name, "health ok", timeout=120)
