"""The gunicorn slots' commands (deploy/slots.py) by exact string, their quoting, and the decisions about
them (deploy/slotstate.py). The scripts run here are in test_deploy_slot_scripts; against a real supervisord
and gunicorn in test_deploy_slot_supervisor."""
from __future__ import annotations

import shlex

import pytest

from fabfile.deploy import commands as c
from fabfile.deploy import slots, slotstate
from fabfile.deploy import supervisor as sv
from fabfile.deploy.releases import parse_state
from fabfile.layout import SLOTS, Layout, check_slot, other_slot, slot_port

L = Layout("demo", "demo.settings", "requirements.txt")
R = "20240131120000-1a2b3c4"
R2 = "20240131130000-5e6f708"


def test_the_layout_of_the_slots():
    assert SLOTS == ("a", "b") and (slot_port("a"), slot_port("b")) == (8000, 8001)
    assert (other_slot("a"), other_slot("b")) == ("b", "a")
    assert (L.slot_program("a"), L.slot_program("b"), L.boot_program, L.web_program) == (
        "demo-web-a", "demo-web-b", "demo-web-boot", "demo-web")
    assert (L.slots_dir, L.slot("b"), L.live_slot) == ("/srv/demo/slots", "/srv/demo/slots/b", "/srv/demo/slots/live")
    assert L.upstream_file == "/etc/nginx/whipup/demo-upstream.conf"
    for bad in ("c", "", "a; whoami", "A"):
        with pytest.raises(ValueError, match="not a slot"):
            check_slot(bad)
        with pytest.raises(ValueError):
            L.slot_program(bad)


def test_the_upstream_names_each_app_nodes_live_slot():
    assert slots.upstream_text([("t-app-0", "10.0.0.10", 8000), ("t-app-1", "10.0.0.11", 8001)]) == (
        "# whipup (managed): each app node's live gunicorn slot; every deploy and rollback rewrites it.\n"
        "server 10.0.0.10:8000 max_fails=1 fail_timeout=10s;  # t-app-0\n"
        "server 10.0.0.11:8001 max_fails=1 fail_timeout=10s;  # t-app-1\n")


def test_go_live_switches_current_and_the_live_slot_in_one_round_trip():
    assert slots.relink("/srv/demo/slots/live", "b") == (
        "ln -sfn b /srv/demo/slots/live.tmp && mv -T /srv/demo/slots/live.tmp /srv/demo/slots/live")
    assert slots.go_live(L, "b", R) == c.switch(L, R) + (
        " && sudo -n -u demo -- sh -c 'ln -sfn b /srv/demo/slots/live.tmp && "
        "mv -T /srv/demo/slots/live.tmp /srv/demo/slots/live'")
    with pytest.raises(ValueError):
        slots.go_live(L, "x; whoami", R)
    with pytest.raises(ValueError, match="not a release id"):
        slots.go_live(L, "a", "x; whoami")


def test_stop_and_a_drain_that_keeps_nothing():
    assert slots.stop(L, "a") == "sudo -n -- sh -c 'supervisorctl stop demo-web-a >/dev/null 2>&1; true'"
    stop = sv.supervisor_rpc("supervisor.stopProcess", "demo-web-b", False)
    assert slots.drain_script(L, "b", 0, 0, 1717000000) == f"{stop} >/dev/null; echo stopped"
    assert slots.drain(L, "b", 0, 0, 1717000000) == c.as_root(f"{stop} >/dev/null; echo stopped")


def test_a_drain_keeps_the_slot_warm_with_fewer_workers_then_a_timer_stops_it_unless_it_is_live():
    status, ttou = sv.supervisor_status("demo-web-a"), sv.supervisor_signal("demo-web-a", "TTOU")
    stop = sv.supervisor_rpc("supervisor.stopProcess", "demo-web-a", False)
    expire = ('[ "$(readlink /srv/demo/slots/live)" != a ] && [ "$(cat /srv/demo/slots/a.cold-at 2>/dev/null)" = '
              f"1717001800 ] && rm -f /srv/demo/slots/a.cold-at && {stop} >/dev/null")
    assert slots.drain_script(L, "a", 1800, 1, 1717000000) == "\n".join([
        status,
        '[ "$w" = RUNNING ] && [ -n "$pid" ] || { echo "not running"; exit 0; }',
        'have=$(grep -l "^PPid:[[:space:]]*$pid\\$" /proc/[0-9]*/status 2>/dev/null | wc -l)',
        '[ -f /srv/demo/slots/a.workers ] || echo "$have" > /srv/demo/slots/a.workers',
        'while [ "$have" -gt 1 ]; do',
        f"  {ttou} >/dev/null || break",
        "  have=$((have - 1)); sleep 0.02",
        "done",
        "echo 1717001800 > /srv/demo/slots/a.cold-at",
        f"setsid nohup sh -c {shlex.quote('sleep 1800; ' + expire)} </dev/null >/dev/null 2>&1 &",
        'echo "warm with $have worker(s) for 30 min"',
    ])
    assert slots.drain_script(L, "a", 90, 2, 0).endswith('echo "warm with $have worker(s) for 90 s"')
    assert slots.drain(L, "a", 90, 2, 0) == c.as_root(slots.drain_script(L, "a", 90, 2, 0))


def test_a_warm_up_brings_the_workers_back_and_a_cold_slot_switches_nothing():
    status, ttin = sv.supervisor_status("demo-web-b"), sv.supervisor_signal("demo-web-b", "TTIN")
    warm = "\n".join([
        status,
        '[ "$w" = RUNNING ] && [ -n "$pid" ] || { echo cold; exit 0; }',
        "rm -f /srv/demo/slots/b.cold-at",
        "want=$(cat /srv/demo/slots/b.workers 2>/dev/null || echo 0)",
        'have=$(grep -l "^PPid:[[:space:]]*$pid\\$" /proc/[0-9]*/status 2>/dev/null | wc -l)',
        'while [ "$have" -lt "$want" ]; do',
        f"  {ttin} >/dev/null || break",
        "  have=$((have + 1)); sleep 0.02",
        "done",
        "rm -f /srv/demo/slots/b.workers",
        'echo "warm $have"',
    ])
    assert slots.warm_up_script(L, "b") == warm
    assert slots.warm_and_go_live(L, "b", R) == (
        f'w=$({c.as_root(warm)}) && echo "$w" && if [ "$w" != cold ]; then {slots.go_live(L, "b", R)}; fi')


def test_the_boot_script_starts_the_slot_and_asks_its_health_path_on_its_own_port_until_a_deadline():
    status = sv.supervisor_status("demo-web-b")
    start = sv.supervisor_rpc("supervisor.startProcess", "demo-web-b", False)
    assert slots.boot_script(L, "b", R, "10.0.0.10", "/-/health", 29.5) == "\n".join([
        "set -e",
        "supervisorctl stop demo-web-b >/dev/null 2>&1 || true",
        "install -d -o demo -g demo /srv/demo/slots",
        f"ln -sfn /srv/demo/releases/{R} /srv/demo/slots/b.tmp && mv -T /srv/demo/slots/b.tmp /srv/demo/slots/b",
        "rm -f /srv/demo/slots/b.workers /srv/demo/slots/b.cold-at",
        "u=$(supervisorctl update demo-web-b 2>&1) || true",
        'case "$u" in *ERROR*) echo "$u (is the program configured? fab configure)" >&2; exit 1;; esac',
        f"x=$({start})",
        'case "$x" in *faultString*) echo "start demo-web-b: $x" >&2; exit 1;; esac',
        "body=$(mktemp)",
        "trap 'rm -f \"$body\"' EXIT",
        "set +e",
        "end=$(($(date +%s) + 30))",
        "while :; do",
        "  r=$(curl -s -m 2 -o \"$body\" -w '%{http_code} %{redirect_url}' http://10.0.0.10:8001/-/health); "
        "code=${r%% *}",
        "  " + status.replace("\n", "\n  "),
        '  [ "$code" = 200 ] && [ "$w" = RUNNING ] && break',     # supervisord's startsecs passed too
        '  case "$w" in BACKOFF|FATAL|EXITED|STOPPED|ERROR) break;; esac',
        '  [ "$(date +%s)" -lt "$end" ] || break',
        "  sleep 0.1",
        "done",                                   # $w: the state the loop last saw (read again, it may move on)
        'cat "$body"; echo',
        'echo "@@ ${code:-000} $w ${r#* }"',
        '[ "$code" = 200 ]',
    ])
    assert slots.boot(L, "b", R, "10.0.0.10", "/-/health", 29.5) == c.as_root(c.tied(     # ends with its session
        slots.boot_script(L, "b", R, "10.0.0.10", "/-/health", 29.5)))


def test_a_value_that_reaches_a_boot_stays_one_argument():
    script = slots.boot_script(L, "a", R, "10.0.0.10", "/x; whoami", 5)
    line = next(x for x in script.splitlines() if x.startswith("  r=$(curl"))
    words = shlex.split(line.split("$(", 1)[1].split(")", 1)[0])
    assert words[-1] == "http://10.0.0.10:8000/x; whoami"
    with pytest.raises(ValueError, match="not a release id"):
        slots.boot_script(L, "a", "x; whoami", "10.0.0.10", "/health", 5)
    with pytest.raises(ValueError, match="not a slot"):
        slots.boot_script(L, "x; whoami", R, "10.0.0.10", "/health", 5)
    evil = Layout("demo", "demo.settings", "requirements.txt", base="/srv/x; whoami")
    line = next(x for x in slots.boot_script(evil, "a", R, "10.0.0.10", "/h", 5).splitlines() if x.startswith("ln "))
    assert shlex.split(line)[:4] == ["ln", "-sfn", f"/srv/x; whoami/demo/releases/{R}", "/srv/x; whoami/demo/slots/a.tmp"]


def test_the_proxy_switch_installs_the_upstream_from_stdin_checked_by_nginx():
    f = "/etc/nginx/whipup/demo-upstream.conf"
    script = "\n".join([
        "set -e",
        "mkdir -p /etc/nginx/whipup",
        f"cat > {f}.whipup-new",
        f"if cmp -s {f}.whipup-new {f}; then rm -f {f}.whipup-new; echo unchanged; exit 0; fi",
        f"if [ -f {f} ]; then cp -p {f} {f}.whipup-old; else rm -f {f}.whipup-old; fi",
        f"mv -f {f}.whipup-new {f}",
        "if ! out=$(nginx -t -q 2>&1); then",
        f"  if [ -f {f}.whipup-old ]; then mv -f {f}.whipup-old {f}; else rm -f {f}; fi",
        '  echo "nginx -t: $out" >&2; exit 1',
        "fi",
        f"rm -f {f}.whipup-old",
        "nginx -s reload",
        "echo reloaded",
    ])
    assert slots.proxy_switch_script(L) == script
    assert slots.proxy_switch(L, None) == c.as_root(script)
    assert slots.proxy_switch(L, R) == f"{c.switch(L, R)} && {c.as_root(script)}"   # its static files, then traffic


# --- decisions ------------------------------------------------------------------------------------

def state(live: str | None, a: str | None, b: str | None, running: str = "ab"):
    lines = ["layout=ok", f"current=releases/{R2}", f"live={live or ''}",
             f"slot=a {'/srv/demo/releases/' + a if a else '-'} -", f"slot=b {'/srv/demo/releases/' + b if b else '-'} -"]
    for s in "ab":
        lines.append(f"program=demo-web-{s} RUNNING 42 /srv/demo - - " if s in running else f"program=demo-web-{s} STOPPED 0 - -")
    return parse_state("\n".join(lines) + "\n")


def test_the_idle_slot_is_the_one_that_is_not_live():
    assert slotstate.idle(state(None, None, None)) == "a"            # before any: slot a, on port 8000
    assert slotstate.idle(state("a", R, None)) == "b" and slotstate.idle(state("b", R, R2)) == "a"
    assert slotstate.live_port(state(None, None, None)) == 8000 and slotstate.live_port(state("b", R, R2)) == 8001
    assert slotstate.live(state("b", R, R2)) == "b"


def test_serving_is_the_release_of_the_live_slot_while_its_gunicorn_runs():
    assert slotstate.serving(L, state("b", R, R2)) == R2
    assert slotstate.serving(L, state("b", R, R2, running="a")) is None
    assert slotstate.serving(L, state(None, R, None)) is None
    assert slotstate.running(L, state("a", R, None, running="a"), "a")
    assert not slotstate.running(L, parse_state("layout=ok\n"), "a")         # no such program: not running


def test_a_warm_slot_is_another_running_slot_on_that_release():
    assert slotstate.warm(L, state("b", R, R2), R) == "a"
    assert slotstate.warm(L, state("b", R, R2, running="b"), R) is None       # stopped since: cold
    assert slotstate.warm(L, state("b", R, R2), R2) is None                   # the live one is no shortcut
    assert slotstate.warm(L, state("a", R, None), R2) is None
