"""How a release takes the traffic on the web tier, with no request lost: boot, switch, drain.

    boot     each app node starts the release in its idle gunicorn slot and asks it for its health path
             (its own gunicorn, its real environment) until it answers; then the proxy reaches that port
    switch   app nodes: `current` and slots/live; proxies: `current` (static files) and the upstream file,
             checked by `nginx -t`, then a graceful reload
    drain    the slot that served keeps running, warm, with app.keep_warm's workers for its time

A deploy, a rollback to a cold release, an environment change and configure's change of the web program
all go through these (`refresh`: the same release again, in the other slot). Thin: the commands are in
`slots`, the decisions in `slotstate`.
"""
from __future__ import annotations

import time

from ..layout import slot_port
from ..remote import run
from . import health, slots, slotstate
from .cluster import Cluster, Member, each, each_best_effort
from .errors import PreviousServes
from .releases import NodeState

BOOT_TIMEOUT = 120.0


def boot(cl: Cluster, m: Member, slot: str, release: str, timeout: float = BOOT_TIMEOUT) -> float:
    """Start `release` in `slot` of app node `m` and wait for its 200; the seconds it took. PreviousServes
    (the slot stopped again) when it does not answer, with its answer and its log."""
    layout, path, port = cl.layout, cl.cfg.app.health_path, slot_port(slot)
    start = time.monotonic()
    r = run(m.conn, slots.boot(layout, slot, release, m.node.private_ip, path, timeout), step=f"boot slot {slot}",
            check=False, timeout=timeout + 60)
    out = (r.stdout or "").rstrip("\n")
    body, _, last = out.rpartition("\n@@ ")
    code, state, location = (last.split(" ", 2) + ["", "", ""])[:3] if last else ("000", "?", "")
    p = health.Probe(code, body or (r.stderr or "").strip(), location.strip(), path)
    if r.exited == 0 and p.healthy(release):
        try:
            if cl.proxies:
                reach(cl, m, slot, release)
        except Exception:
            run(m.conn, slots.stop(layout, slot), step=f"stop slot {slot}", check=False)   # it gets no traffic
            raise
        return time.monotonic() - start
    program = layout.slot_program(slot)
    tail = health.app_log_tail(cl, m, program)
    run(m.conn, slots.stop(layout, slot), step=f"stop slot {slot}", check=False)
    why = p.why(release) if code != "000" or not r.stderr else (r.stderr or "").strip()
    raise PreviousServes(f"release {release} in gunicorn slot {slot} (:{port}, {state or '?'}): {path} "
                         f"{why}\n  last lines of the {program} log:\n    " + tail.replace("\n", "\n    ")
                         + "\nit never received traffic: the previous release keeps serving")


def reach(cl: Cluster, m: Member, slot: str, release: str) -> None:
    """The proxies reach the booted slot (the security group lets them in on its port)."""
    p = health.probe(cl, m, port=slot_port(slot))
    if not p.healthy(release):
        raise PreviousServes(f"slot {slot} answers on {m.name}, but from {cl.proxies[0].name} "
                             f"{m.node.private_ip}:{slot_port(slot)}{p.path} {p.why(release)} (is port "
                             f"{slot_port(slot)} open to the proxies? fab provision)\n"
                             "it never received traffic: the previous release keeps serving")


def boot_all(cl: Cluster, apps: list[Member], release: str, states: dict[str, NodeState],
             booted: dict[str, str]) -> None:
    """The release in the idle slot of every app node at once; `booted` gets node -> slot as each comes up
    (a failure path stops them)."""
    def one(m: Member) -> None:
        slot = slotstate.idle(states[m.name])
        cl.progress(m.name, "gunicorn", f"booting {release} in slot {slot} (:{slot_port(slot)})")
        secs = boot(cl, m, slot, release)
        booted[m.name] = slot
        cl.progress(m.name, "gunicorn", f"slot {slot} answers {cl.cfg.app.health_path} with 200 after {secs:.1f} s, "
                                        f"before any traffic")

    each(apps, one, "booting the new release")


def stop_booted(cl: Cluster, booted: dict[str, str]) -> None:
    """The failure path before the switch: the slots booted for a release that will not go live."""
    members = [m for m in cl.apps if m.name in booted]
    for name, error in each_best_effort(members, lambda m: run(m.conn, slots.stop(cl.layout, booted[m.name]),
                                                                step="stop the booted slot")).items():
        cl.out(f"warning: {name}: slot {booted[name]} not stopped: {error}")


def ports(cl: Cluster, states: dict[str, NodeState], live: dict[str, str]) -> list[tuple[str, str, int]]:
    """The upstream: every app node with the port of its live slot (`live` first, then what it had)."""
    out = []
    for m in cl.apps:
        slot = live.get(m.name) or (states[m.name].live if m.name in states else None) or slotstate.DEFAULT_SLOT
        out.append((m.name, m.node.private_ip, slot_port(slot)))
    return out


def switch_apps(cl: Cluster, apps: list[Member], live: dict[str, str], release: str,
                switched: list[Member] | None = None) -> None:
    """`current` and slots/live on each app node (bookkeeping: the proxies' upstream is what moves traffic)."""
    def one(m: Member) -> None:
        run(m.conn, slots.go_live(cl.layout, live[m.name], release), step="switch current and the live slot")
        if switched is not None:
            switched.append(m)

    each(apps, one, "switching the app nodes")


def switch_proxies(cl: Cluster, states: dict[str, NodeState], live: dict[str, str], release: str | None,
                   proxies: list[Member] | None = None, switched: list[Member] | None = None) -> None:
    """Every proxy: `current` (when `release`), the upstream to the live slots, `nginx -t`, a graceful reload."""
    if proxies is None and not cl.proxies and any(n.role == "proxy" for n in cl.running):
        raise RuntimeError("switch_proxies: the cluster was opened without its proxies")
    text = slots.upstream_text(ports(cl, states, live))

    def one(m: Member) -> None:
        out = run(m.conn, slots.proxy_switch(cl.layout, release), step="switch the upstream", stdin=text)
        if switched is not None:
            switched.append(m)
        cl.progress(m.name, "nginx", "upstream unchanged" if "unchanged" in out.stdout else
                    "upstream -> " + ", ".join(f"{n}:{p}" for n, _, p in ports(cl, states, live)) + " (graceful reload)")

    each(cl.proxies if proxies is None else proxies, one, "switching the proxies")


def drain_all(cl: Cluster, apps: list[Member], slots_of: dict[str, str]) -> None:
    """The slots that served before the switch: warm for app.keep_warm, then stopped (best effort)."""
    warm = cl.cfg.app.keep_warm
    now = int(time.time())

    def one(m: Member) -> None:
        out = run(m.conn, slots.drain(cl.layout, slots_of[m.name], warm.seconds, warm.workers, now),
                  step="drain the previous slot").stdout.strip()
        cl.progress(m.name, "gunicorn", f"slot {slots_of[m.name]}: {out}")

    members = [m for m in apps if m.name in slots_of]
    for name, error in each_best_effort(members, one).items():
        cl.out(f"warning: {name}: slot {slots_of[name]} not drained: {error}")


def refresh(cl: Cluster, apps: list[Member], states: dict[str, NodeState], timeout: float, why: str) -> None:
    """The release each app node serves, booted again in its idle slot (a changed environment or program
    file), then the switch, the gate and the drain: no request sees a restart."""
    moving = [m for m in apps if slotstate.serving(cl.layout, states[m.name]) or _unslotted(states[m.name])]
    for m in apps:
        if m not in moving:
            cl.progress(m.name, "gunicorn", f"not serving: takes the {why} when it starts")
    if not moving:
        return
    booted: dict[str, str] = {}
    try:
        each(moving, lambda m: _reboot(cl, m, states[m.name], booted, why), "booting the other slot")
    except Exception:
        stop_booted(cl, booted)
        raise
    by_release: dict[str, list[Member]] = {}
    for m in moving:
        by_release.setdefault(states[m.name].current or "", []).append(m)
    for release, members in by_release.items():
        switch_apps(cl, members, booted, release)
    switch_proxies(cl, states, booted, None)
    releases = {states[m.name].current for m in moving}
    health.gate(cl, releases.pop() if len(releases) == 1 else None, timeout, moving, booted)
    drain_all(cl, moving, {m.name: states[m.name].live for m in moving if states[m.name].live})


def _unslotted(state: NodeState) -> bool:
    """A node deployed before the slots: a release is current, no slot is live (configure just replaced its
    single gunicorn program by the slots' file): its release is booted in slot a."""
    return state.current is not None and state.live is None


def _reboot(cl: Cluster, m: Member, state: NodeState, booted: dict[str, str], why: str) -> None:
    slot = slotstate.idle(state)
    release = slotstate.serving(cl.layout, state) or state.current
    assert release is not None
    secs = boot(cl, m, slot, release)
    booted[m.name] = slot
    cl.progress(m.name, "gunicorn", f"{release} booted again in slot {slot} for the {why}: 200 after {secs:.1f} s")
