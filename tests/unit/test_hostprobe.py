"""The pure parts of tests/e2e/hostprobe.py (used by the zero-downtime tests and bench/rollback.py): which
upstream servers nginx names, which supervisor program serves, and the probe's command and JSON."""
import json
import shlex

from tests.e2e.hostprobe import Program, parse_programs, programs_command, serving, upstream_servers

NGINX_T = """nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
# configuration file /etc/nginx/whipup/demo-upstream.conf:
upstream demo_web {
    server 10.112.1.5:8001 max_fails=1 fail_timeout=10s;  # zdt-app-0
    server 10.112.1.6:8000 down;
    server 10.112.1.7:8000 backup;
    keepalive 16;
}
# configuration file /etc/nginx/sites-available/whipup.conf:
server {
    listen 80 default_server;
    location / { proxy_pass http://demo_web; }
}
"""


def program(name, port, state="RUNNING", ip="10.112.1.5"):
    return Program(name, name, state, 42, 1, 4, 100_000, f"{ip}:{port}" if port else None)


def test_upstream_servers_are_those_of_upstream_blocks_but_down_and_backup_ones():
    assert upstream_servers(NGINX_T) == [("10.112.1.5", 8001)]
    assert upstream_servers("server {\n listen 80;\n}\n") == []


def test_the_serving_program_binds_what_nginx_names_on_that_node_and_runs():
    a, b = program("demo-web-a", 8000), program("demo-web-b", 8001)
    servers = upstream_servers(NGINX_T)
    assert serving([a, b], servers, "10.112.1.5") == [b]
    assert serving([a, program("demo-web-b", 8001, "STOPPED")], servers, "10.112.1.5") == []
    starting = program("demo-web-b", 8001, "STARTING")                     # up, within its startsecs
    assert serving([a, starting], servers, "10.112.1.5") == [starting]
    assert serving([a, b], servers, "10.112.1.9") == []                   # another node's address
    assert serving([program("demo-web-boot", None, "EXITED")], servers, "10.112.1.5") == []
    assert b.port == 8001 and program("x", None).port is None


def test_parse_programs_reads_the_last_json_line_and_the_reread():
    line = json.dumps({"programs": [{"name": "demo-web", "group": "demo-web", "state": "RUNNING", "pid": 7,
                                     "start": 1700000000, "processes": 4, "rss_kib": 204800,
                                     "bind": "10.112.1.5:8000"}],
                       "added": [], "changed": ["demo-web"], "removed": []})
    programs, reread = parse_programs("some warning\n" + line + "\n")
    assert programs == [Program("demo-web", "demo-web", "RUNNING", 7, 1700000000, 4, 204800, "10.112.1.5:8000")]
    assert reread == {"added": [], "changed": ["demo-web"], "removed": []}


def test_programs_command_keeps_the_prefix_one_argument():
    argv = shlex.split(programs_command("x; whoami", reread=True))
    assert argv[:4] == ["sudo", "-n", "python3", "-c"]
    assert argv[5:] == ["x; whoami", "reread"]
    assert shlex.split(programs_command("demo-web"))[-1] == "read"


INCLUDED = """# configuration file /etc/nginx/sites-enabled/whipup.conf:
upstream demo_web {
    include /etc/nginx/whipup/demo-upstream.conf;
    keepalive 16;
}

# configuration file /etc/nginx/whipup/demo-upstream.conf:
# whipup (managed): each app node's live gunicorn slot
server 10.112.1.7:8001 max_fails=1 fail_timeout=10s;  # zdt-app-0
server 10.112.1.8:8000 down;
"""


def test_upstream_servers_follow_an_upstream_blocks_include():
    assert upstream_servers(INCLUDED) == [("10.112.1.7", 8001)]
    assert upstream_servers(INCLUDED.replace("    include /etc/nginx/whipup/demo-upstream.conf;\n", "")) == []
