"""The bad-input corpus: each broken input gives a clear error naming the file, key or flag,
a non-zero exit, and makes no AWS API call.

Every case runs `fab` as a user would, in a fresh process, with the cloud endpoint pointed at a
recorder on loopback: any request that reached it would be an API call, and the test fails.
(The corpus of inputs that need a running cluster lives in tests/e2e/test_bad_input_hosts.py.)
"""
from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "roles.yaml").read_text())


@pytest.fixture(scope="module")
def recorder():
    """An HTTP server on 127.0.0.1 that records every request made to it."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.path)
            self.send_response(500)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def run_fab(tmp: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "WHIPUP_SANDBOX_PORT": str(port),            # the sandbox target's endpoint: the recorder
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",  # and any aws call's too
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",          # never ask an instance metadata service
        "PYTHONPATH": str(ROOT),
    })
    return subprocess.run([sys.executable, "-m", "fabric", "-r", str(ROOT), *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def mutate(fn):
    data = yaml.safe_load(yaml.safe_dump(SHIPPED))
    fn(data)
    return yaml.safe_dump(data, sort_keys=False)


def setitem(path, value):
    def fn(data):
        d = data
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return fn


def delitem(path):
    def fn(data):
        d = data
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    return fn


DUPLICATE_ROLE = (ROOT / "roles.yaml").read_text().replace("\nroles:\n", "\nroles:\n  app:\n    count: 1\n", 1)

# (id, roles.yaml text or None for the shipped file, fab arguments, what stderr must say)
CASES = [
    ("not-yaml", "cluster: [unclosed\n", ["provision"], "roles.yaml: not valid YAML"),
    ("empty-file", "", ["provision"], "roles.yaml: empty file"),
    ("top-level-list", "- a\n- b\n", ["status"], "roles.yaml: expected a mapping"),
    ("unknown-top-key", mutate(setitem(["rolez"], {})), ["provision"], "roles.yaml: rolez: unknown key"),
    ("typo-key-suggests", mutate(lambda d: d["roles"]["app"].update(instnce_type="t3.small")), ["provision"],
     "roles.app.instnce_type: unknown key (did you mean 'instance_type'?)"),
    ("count-not-int", mutate(setitem(["roles", "app", "count"], "two")), ["provision"],
     "roles.yaml: roles.app.count: expected an integer"),
    ("port-out-of-range", mutate(setitem(["roles", "app", "ports"], [{"port": 70000, "from": "proxy"}])),
     ["provision"], "roles.yaml: roles.app.ports[0].port: expected an integer 1-65535, got 70000"),
    ("port-is-string", mutate(setitem(["roles", "app", "ports"], [{"port": "http", "from": "proxy"}])),
     ["provision"], "roles.app.ports[0].port: expected an integer"),
    ("unknown-role-in-from", mutate(setitem(["roles", "db", "ports"], [{"port": 5432, "from": "ap"}])),
     ["provision"], "roles.yaml: roles.db.ports[0].from: unknown role 'ap'"),
    ("bad-cidr", mutate(setitem(["cluster", "admin_cidr"], "10.0.0.300/32")), ["provision"],
     "roles.yaml: cluster.admin_cidr:"),
    ("duplicate-role", DUPLICATE_ROLE, ["provision"], "duplicate key"),
    ("missing-app-repo", mutate(delitem(["app", "repo"])), ["provision"], "roles.yaml: app.repo: required"),
    ("repo-path-missing", mutate(setitem(["app", "repo"], "no/such/dir")), ["provision"], "app.repo"),
    ("bad-target", mutate(setitem(["cluster", "target"], "gcp")), ["provision"],
     "roles.yaml: cluster.target: expected one of"),
    ("bad-role-name", mutate(lambda d: d["roles"].update({"Web_1": d["roles"]["app"]})), ["provision"],
     "roles.Web_1: role names must match"),
    ("ssh-port-listed", mutate(setitem(["roles", "app", "ports"], [{"port": 22, "from": "0.0.0.0/0"}])),
     ["provision"], "roles.app.ports[0].port: port 22 is managed by whipup"),
    ("elastic-ip-not-bool", mutate(setitem(["roles", "proxy", "elastic_ip"], "yes please")), ["provision"],
     "roles.proxy.elastic_ip: expected true or false"),
    ("template-not-j2", mutate(setitem(["roles", "proxy", "templates"], [{"src": "etc/nginx/x.conf"}])),
     ["provision"], "roles.proxy.templates[0].src: expected a template name ending in .j2"),
    ("mode-not-string", mutate(setitem(["roles", "proxy", "templates"],
                                       [{"src": "etc/nginx/sites-available/whipup.conf.j2", "mode": 644}])),
     ["provision"], "roles.proxy.templates[0].mode"),
    ("bad-cluster-name", mutate(setitem(["cluster", "name"], "My Cluster!")), ["provision"], "cluster.name"),
    ("missing-template", mutate(setitem(["roles", "proxy", "templates"], [{"src": "etc/nginx/nope.conf.j2"}])),
     ["whip-up-full-system"], "roles.yaml: roles.proxy.templates[0].src: no such template"),
    ("template-undefined-variable", mutate(setitem(["configure"], {"templates_dir": "bad-templates"})),
     ["whip-up-full-system"], "etc/nginx/sites-available/whipup.conf.j2:2: 'no_such_setting' is undefined"),
    ("missing-config-file", None, ["provision", "--config", "nope.yaml"], "nope.yaml: cannot read"),
    ("unknown-target-flag", None, ["provision", "--target", "azure"], "--target: unknown target 'azure'"),
    ("aws-without-credentials", None, ["provision", "--target", "aws"], "no AWS credentials found"),
    ("create-node-unknown-role", None, ["create-node", "cache"], "unknown role 'cache'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_api_call(tmp_path, recorder, case):
    name, text, args, message = case
    port, seen = recorder
    seen.clear()
    (tmp_path / "roles.yaml").write_text(text if text is not None else (ROOT / "roles.yaml").read_text())
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    bad = tmp_path / "bad-templates"  # a copy of templates/ with an undefined variable on line 2 of one
    shutil.copytree(ROOT / "templates", bad)
    site = bad / "etc/nginx/sites-available/whipup.conf.j2"
    lines = site.read_text().splitlines(True)
    site.write_text(lines[0] + "# {{ no_such_setting }}\n" + "".join(lines[1:]))
    p = run_fab(tmp_path, port, *args)
    assert p.returncode != 0, f"{name}: exit 0\n{p.stdout}\n{p.stderr}"
    assert message in p.stderr, f"{name}: stderr does not say {message!r}:\n{p.stderr}"
    assert "Traceback" not in p.stderr, f"{name}: a traceback instead of an error message:\n{p.stderr}"
    assert seen == [], f"{name}: made API calls {seen}"


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 20 and len({c[0] for c in CASES}) == len(CASES)
