"""The recovery receiver (what an alert starts) and `fab status`'s view from the monitor."""
from __future__ import annotations

import json
import shlex
import sys
import threading
import time
import urllib.request

import pytest

from fabfile.monitor import receiver, status
from fabfile.monitor.receiver import Recoverer, has_recover_task, recover_argv, roles_to_recover


def alert(name, role, state="firing", node="c-app-0"):
    return {"status": state, "labels": {"alertname": name, "role": role, "node": node}}


def test_only_firing_node_down_of_app_and_proxy_nodes_start_a_recovery():
    body = {"alerts": [alert("NodeDown", "app"), alert("NodeDown", "app", node="c-app-1"),
                       alert("NodeDown", "proxy", "resolved"), alert("NodeDown", "db"),
                       alert("AppUnhealthy", "proxy"), alert("NodeDown", "proxy"), "junk", {"labels": 3}]}
    assert roles_to_recover(body) == ["app", "proxy"]
    assert roles_to_recover({"alerts": "x"}) == [] and roles_to_recover([1]) == []


def test_the_recover_command_is_fab_recover_once_that_task_exists():
    listed = "Available tasks:\n\n  provision   Create ...\n  recover     Rebuild a lost node of ROLE\n"
    assert has_recover_task(listed) and not has_recover_task("  recovery-drill  x\n  releases  y\n")
    assert recover_argv("app", "/x/roles.yaml", "aws", True) == [
        sys.executable, "-m", "fabric", "recover", "app", "--config", "/x/roles.yaml", "--target", "aws"]
    assert recover_argv("proxy", "/x/r y.yaml; whoami", "sandbox", False) == [
        sys.executable, "-m", "fabric", "whip-up-full-system", "--config", "/x/r y.yaml; whoami",
        "--target", "sandbox"]                                                                  # an argv
    with pytest.raises(ValueError):
        recover_argv("db", "/x", "sandbox", True)


def test_one_recovery_per_role_at_a_time(tmp_path):
    gate = tmp_path / "gate"
    argv = [sys.executable, "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"]
    lines: list[str] = []
    r = Recoverer(lambda role: argv, lines.append, tmp_path)
    assert r.offer(["app"]) == ["app"]
    assert r.offer(["app", "proxy"]) == ["proxy"]          # app's is still running
    gate.write_text("")
    deadline = time.monotonic() + 30
    while r.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not r.busy
    assert sum(1 for line in lines if line.startswith("recover app: exit 0")) == 1
    assert r.offer(["app"]) == ["app"]                     # done: a new alert starts a new one


def serving_receiver() -> tuple[object, list[list[str]]]:
    """The receiver's HTTP handler on 127.0.0.1 (a port of its own), with a recoverer that keeps what it was
    offered: (the running server, the offers)."""
    offered: list[list[str]] = []

    class Fake:
        def offer(self, roles):
            offered.append(list(roles))
            return list(roles)

    server = receiver.http.server.ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler(Fake(), lambda s: None))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, offered


def test_the_receiver_answers_alertmanager_on_loopback(tmp_path):
    server, offered = serving_receiver()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        body = json.dumps({"alerts": [alert("NodeDown", "app")]}).encode()
        with urllib.request.urlopen(urllib.request.Request(url + "/recover", data=body), timeout=5) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url + "/other", data=body), timeout=5)
        assert info.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(urllib.request.Request(url + "/recover", data=b"{nope"), timeout=5)
        assert info.value.code == 400
    finally:
        server.shutdown()
    assert offered == [["app"]]


def test_the_receiver_needs_its_target():
    with pytest.raises(SystemExit):
        receiver.main(["--config", "r.yaml"])
    with pytest.raises(SystemExit):
        receiver.main(["--config", "r.yaml", "--target", "x; whoami"])


def answer(result):
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


def m(value, **labels):
    return {"metric": labels, "value": [1.0, value]}


def test_status_asks_prometheus_on_loopback_and_shows_each_node():
    cmd = status.query_command()
    assert cmd.startswith("curl -sS -m 5 -G http://127.0.0.1:9090/api/v1/query --data-urlencode "
                          + shlex.quote('query=up{job="node"}') + "; echo; ")
    assert cmd.count("curl ") == 4
    out = "\n".join([
        answer([m("1", node="c-app-0", role="app", job="node"), m("0", node="c-proxy-0", role="proxy", job="node"),
                m("1", node="c-db-0", role="db", job="node")]),
        answer([m("0", node="c-app-0", role="app", job="app_health", instance="http://a:8000/h"),
                m("0", node="c-proxy-0", role="proxy", job="site", instance="http://p/h"),
                m("1", node="c-db-0", role="db", job="db", instance="d:5432")]),
        answer([m("1", node="c-app-0", job="app_health")]),
        answer([m("1", node="c-proxy-0", role="proxy", alertname="NodeDown"),
                m("1", node="c-proxy-0", role="proxy", alertname="SiteDown")]),
    ]) + "\n"
    assert status.rows(status.parse(out)) == [
        ("c-app-0", "app", "up", "health ok", "none"),
        ("c-db-0", "db", "up", "postgres ok", "none"),
        ("c-proxy-0", "proxy", "DOWN", "site FAILING", "NodeDown, SiteDown")]
    assert status.parse("curl: (7) Failed to connect\n\n\n\n") is None
    assert status.parse(answer([])) is None                  # fewer answers than questions


def test_the_receiver_process_is_wanted_only_with_recover_and_the_monitor_on(cfg):
    import dataclasses
    import os

    from fabfile.monitor import daemon
    from fabfile.monitor.config import MonitorConfig

    on = dataclasses.replace(cfg, roles=tuple(dataclasses.replace(r, count=1) if r.name == "monitor" else r
                                              for r in cfg.roles), monitor=MonitorConfig(recover=True))
    assert daemon.wanted(on)
    assert not daemon.wanted(dataclasses.replace(on, monitor=MonitorConfig()))
    assert not daemon.wanted(dataclasses.replace(cfg, monitor=MonitorConfig(recover=True)))   # role at count 0
    assert daemon.receiver_argv(on) == [
        sys.executable, "-m", "fabfile.monitor.receiver", "--config", str(cfg.path), "--target", "sandbox"]
    lines = []
    daemon.ensure_receiver(cfg, lines.append)                 # not wanted: nothing started, nothing said
    assert lines == [] and not daemon.pid_path(cfg).exists()
    daemon.pid_path(on).parent.mkdir(parents=True, exist_ok=True)
    daemon.pid_path(on).write_text(f"{os.getpid()}\n")       # a live pid that is not the receiver's
    assert daemon.running_pid(on) is None
    daemon.stop_receiver(on, lines.append)                    # nothing of ours to stop
    assert lines == []
