"""Two gunicorn slots per app node, as Kamal's proxy swaps containers: the commands, pure.

    slots/a, slots/b     links to the release each slot runs (supervisor programs <app>-web-a on :8000 and
                         <app>-web-b on :8001, autostart off; <app>-web-boot starts the live one at boot)
    slots/live           a link to the live slot (a or b): the one the proxies' upstream names
    slots/<s>.workers    how many workers slot <s> ran when it was drained (a rollback brings them back)
    slots/<s>.cold-at    when a drained slot stops (epoch seconds): the previous release stays warm till then

A deploy boots the idle slot on the new release (`boot`: its own gunicorn, its real environment, asked for
its health path on its own port until it answers or dies), the proxies' upstream goes to it (`proxy_switch`,
a graceful nginx reload), `live` follows (`go_live`), and the slot that served is drained (`drain`) but
left warm. A rollback to the release the warm slot runs is `warm_up` + the switch: no process to boot.
Every value is quoted; the scripts run as root (supervisord's socket is root's) unless said otherwise.
"""
from __future__ import annotations

import math
from typing import Iterable

from ..layout import Layout, check_slot, slot_port
from .commands import as_app, as_root, q, release_arg, switch, tied
from .supervisor import supervisor_rpc, supervisor_signal, supervisor_status

BOOT_POLL = 0.1          # seconds between two health probes of a booting slot
UPSTREAM_OPTIONS = "max_fails=1 fail_timeout=10s"


def upstream_text(servers: Iterable[tuple[str, str, int]]) -> str:
    """The proxies' upstream file: `server ip:port` per app node (name, ip, its live slot's port)."""
    lines = ["# whipup (managed): each app node's live gunicorn slot; every deploy and rollback rewrites it."]
    lines += [f"server {ip}:{int(port)} {UPSTREAM_OPTIONS};  # {name}" for name, ip, port in servers]
    return "\n".join(lines) + "\n"


def _children(pid_var: str) -> str:
    """Shell: how many processes have $pid_var as their parent (gunicorn's workers of a master)."""
    return (f'grep -l "^PPid:[[:space:]]*${pid_var}\\$" /proc/[0-9]*/status 2>/dev/null | wc -l')


def relink(link: str, target: str) -> str:
    """`link` -> `target` atomically (a link under a temp name renamed over it)."""
    tmp = f"{link}.tmp"
    return f"ln -sfn {q(target)} {q(tmp)} && mv -T {q(tmp)} {q(link)}"


def boot_script(layout: Layout, slot: str, release_id: str, address: str, path: str, timeout: float) -> str:
    """Stop slot `slot`, point it at the release, apply its program file, start it, and ask its health path
    on its own port until it answers 200 and supervisord says RUNNING, it dies (BACKOFF, FATAL, EXITED) or
    `timeout` passes. Prints the last answer's body, then `@@ <status code> <supervisor state> <redirect
    target>`; exits 0 on a 200, 1 otherwise."""
    program, link = layout.slot_program(slot), layout.slot(slot)
    url = f"http://{address}:{slot_port(slot)}{path}"
    start = supervisor_rpc("supervisor.startProcess", program, False)
    return "\n".join([
        "set -e",
        f"supervisorctl stop {q(program)} >/dev/null 2>&1 || true",
        f"install -d -o {q(layout.user)} -g {q(layout.group)} {q(layout.slots_dir)}",
        relink(link, layout.release(release_arg(release_id))),
        f"rm -f {q(link + '.workers')} {q(link + '.cold-at')}",
        f"u=$(supervisorctl update {q(program)} 2>&1) || true",
        'case "$u" in *ERROR*) echo "$u (is the program configured? fab configure)" >&2; exit 1;; esac',
        f"x=$({start})",
        f'case "$x" in *faultString*) echo "start {program}: $x" >&2; exit 1;; esac',
        "body=$(mktemp)",
        "trap 'rm -f \"$body\"' EXIT",
        "set +e",
        # bounded by the clock, not a count of polls: each one may wait for curl's -m
        f"end=$(($(date +%s) + {max(1, math.ceil(timeout))}))",
        "while :; do",
        f"  r=$(curl -s -m 2 -o \"$body\" -w '%{{http_code}} %{{redirect_url}}' {q(url)}); code=${{r%% *}}",
        "  " + supervisor_status(program).replace("\n", "\n  "),
        # up once supervisord says so too (startsecs): a slot still STARTING is not running to a drain or warm-up
        '  [ "$code" = 200 ] && [ "$w" = RUNNING ] && break',
        '  case "$w" in BACKOFF|FATAL|EXITED|STOPPED|ERROR) break;; esac',
        '  [ "$(date +%s)" -lt "$end" ] || break',
        f"  sleep {BOOT_POLL}",
        "done",
        'cat "$body"; echo',
        'echo "@@ ${code:-000} $w ${r#* }"',
        '[ "$code" = 200 ]',
    ])


def boot(layout: Layout, slot: str, release_id: str, address: str, path: str, timeout: float) -> str:
    """The boot script as root, ended with its SSH session (`tied`): a deploy killed while the slot boots
    leaves no health poll running on the node."""
    return as_root(tied(boot_script(layout, slot, release_id, address, path, timeout)))


def warm_up_script(layout: Layout, slot: str) -> str:
    """A warm slot back to the workers it ran before its drain (TTIN, one per missing worker: gunicorn
    queues at most five signals, so one at a time); prints `warm <workers now>`, or `cold` (not running)."""
    program, link = layout.slot_program(slot), layout.slot(slot)
    return "\n".join([
        supervisor_status(program),
        '[ "$w" = RUNNING ] && [ -n "$pid" ] || { echo cold; exit 0; }',
        f"rm -f {q(link + '.cold-at')}",
        f"want=$(cat {q(link + '.workers')} 2>/dev/null || echo 0)",
        f"have=$({_children('pid')})",
        'while [ "$have" -lt "$want" ]; do',
        f"  {supervisor_signal(program, 'TTIN')} >/dev/null || break",
        "  have=$((have + 1)); sleep 0.02",
        "done",
        f"rm -f {q(link + '.workers')}",
        'echo "warm $have"',
    ])


def go_live_script(layout: Layout, slot: str) -> str:
    """slots/live -> `slot` (as the app user)."""
    return relink(layout.live_slot, check_slot(slot))


def go_live(layout: Layout, slot: str, release_id: str) -> str:
    """On an app node: `current` -> the release and slots/live -> the slot, in one round trip."""
    return f"{switch(layout, release_id)} && {as_app(layout, go_live_script(layout, slot))}"


def warm_and_go_live(layout: Layout, slot: str, release_id: str) -> str:
    """A rollback's app node: the warm slot's workers back, then `go_live`; prints `warm N`, or `cold` (the
    slot stopped meanwhile: nothing is switched, the caller boots it)."""
    return (f"w=$({as_root(warm_up_script(layout, slot))}) && echo \"$w\" && "
            f"if [ \"$w\" != cold ]; then {go_live(layout, slot, release_id)}; fi")


def proxy_switch_script(layout: Layout) -> str:
    """The upstream file from stdin; when it differs, installed and checked (`nginx -t`; the old one back
    on a failure, with nginx's words), then a graceful reload. Prints `unchanged` or `reloaded`."""
    f = q(layout.upstream_file)
    new, old = q(layout.upstream_file + ".whipup-new"), q(layout.upstream_file + ".whipup-old")
    return "\n".join([
        "set -e",
        f"mkdir -p {q(layout.upstream_file.rsplit('/', 1)[0])}",
        f"cat > {new}",
        f"if cmp -s {new} {f}; then rm -f {new}; echo unchanged; exit 0; fi",
        f"if [ -f {f} ]; then cp -p {f} {old}; else rm -f {old}; fi",
        f"mv -f {new} {f}",
        "if ! out=$(nginx -t -q 2>&1); then",
        f"  if [ -f {old} ]; then mv -f {old} {f}; else rm -f {f}; fi",
        '  echo "nginx -t: $out" >&2; exit 1',
        "fi",
        f"rm -f {old}",
        "nginx -s reload",
        "echo reloaded",
    ])


def proxy_switch(layout: Layout, release_id: str | None) -> str:
    """On a proxy: `current` -> the release (its static files; None: left as it is), then the upstream."""
    upstream = as_root(proxy_switch_script(layout))
    return f"{switch(layout, release_id)} && {upstream}" if release_id else upstream


def drain_script(layout: Layout, slot: str, keep_seconds: int, keep_workers: int, now: int) -> str:
    """The slot that served, after the switch: kept warm with `keep_workers` workers (TTOU: gunicorn ends
    the extra ones gracefully) until `now + keep_seconds`, when a detached timer stops it unless it is live
    again by then; with keep_seconds 0 it stops now (TERM: in-flight requests finish). Prints what it did."""
    program, link = layout.slot_program(slot), layout.slot(slot)
    stop = supervisor_rpc("supervisor.stopProcess", program, False)
    if keep_seconds <= 0:
        return f"{stop} >/dev/null; echo stopped"
    until = now + int(keep_seconds)
    expire = (f'[ "$(readlink {q(layout.live_slot)})" != {q(slot)} ] && '
              f'[ "$(cat {q(link + ".cold-at")} 2>/dev/null)" = {until} ] && rm -f {q(link + ".cold-at")} && '
              f"{stop} >/dev/null")
    return "\n".join([
        supervisor_status(program),
        '[ "$w" = RUNNING ] && [ -n "$pid" ] || { echo "not running"; exit 0; }',
        f"have=$({_children('pid')})",
        f"[ -f {q(link + '.workers')} ] || echo \"$have\" > {q(link + '.workers')}",
        f'while [ "$have" -gt {int(keep_workers)} ]; do',
        f"  {supervisor_signal(program, 'TTOU')} >/dev/null || break",
        "  have=$((have - 1)); sleep 0.02",
        "done",
        f"echo {until} > {q(link + '.cold-at')}",
        f"setsid nohup sh -c {q(f'sleep {int(keep_seconds)}; {expire}')} </dev/null >/dev/null 2>&1 &",
        f'echo "warm with $have worker(s) for {_minutes(keep_seconds)}"',
    ])


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def drain(layout: Layout, slot: str, keep_seconds: int, keep_workers: int, now: int) -> str:
    return as_root(drain_script(layout, slot, keep_seconds, keep_workers, now))


def stop(layout: Layout, slot: str) -> str:
    """Stop a slot (a boot that failed): supervisor's stop, TERM then KILL after stopwaitsecs."""
    return as_root(f"supervisorctl stop {q(layout.slot_program(slot))} >/dev/null 2>&1; true")


def rss_script(layout: Layout) -> str:
    """`rss <slot> <KiB>` per running slot: its master's and workers' resident memory, summed."""
    lines = []
    for slot in ("a", "b"):
        program = layout.slot_program(slot)
        lines += [supervisor_status(program),
                  'if [ "$w" = RUNNING ] && [ -n "$pid" ]; then',
                  '  k=0; for p in $pid $(grep -l "^PPid:[[:space:]]*$pid\\$" /proc/[0-9]*/status 2>/dev/null '
                  "| cut -d/ -f3); do r=$(sed -n 's/^VmRSS:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/$p/status "
                  "2>/dev/null); k=$((k + ${r:-0})); done",
                  f'  echo "rss {slot} $k"',
                  "fi"]
    return "\n".join(lines)
