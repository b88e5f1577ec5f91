"""Fault drills (issue 6) on the local cloud: things break mid-flight, whipup copes.

One cluster of the 4 default roles on a private sandbox (#4), shared by the drills in order, from the
least destructive to the most:

1. two quick-updates at once: exactly one runs, the other is refused at once, naming the holder;
2. a deploy whose health check fails: undone by itself before any request reaches it, 0 failed requests
   under load, non-zero exit; one failing only under gunicorn, after the switch: rolled back automatically,
   0 failed requests on the site's page and static files;
3. the SSH connection cut mid-deploy (the session's sshd killed during pip): the previous release keeps
   serving, the lock is released and a re-run completes; with the deploying process killed instead, the
   lock stays, reported with its holder, its age and as stale, and a plain re-run takes it over; a lock
   from another machine needs --break-lock; a deploy killed at each of its stages, then re-run, leaves no
   process on any host and the site serves throughout;
4. the db node stopped and started: its data survives and the app recovers;
5. the app node lost (terminated): whip-up-full-system rebuilds exactly that node, the rows intact.

Code changes are commits in a standalone git copy of examples/demo. HTTP goes only to the proxy's private
IP once `ip route get` shows it on this sandbox's bridge; every load is bounded in requests and time.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import cluster_roles, fab, make_network, sandbox_env
from .demo import DemoCluster as Cluster, git, sandbox_settings
from .traffic import Background, Load

pytestmark = pytest.mark.e2e

SANDBOX = 4
QUICK_WEB = ("quick-update", "--component", "web", "--no-upgrade-django", "--yes")


# --- processes of a host, from this machine ------------------------------------------------------------

def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def host_processes(pid1: int) -> list[int]:
    """Every process of the host whose PID 1 is `pid1` (they share its PID namespace)."""
    ns = os.readlink(f"/proc/{pid1}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def session_sshd(pid1: int, pid: int) -> list[int]:
    """The sshd processes serving the SSH connection `pid` runs under: the child the listening sshd forked
    for the connection (`sshd: admin [priv]`) and its unprivileged child (`sshd: admin@notty`), which
    holds the socket. Killing both cuts the connection at once."""
    chain = []
    while pid and pid != pid1:
        chain.append(pid)
        pid = _ppid(pid)
    return [p for p in chain if _cmdline(p).startswith("sshd: ") and "[listener]" not in _cmdline(p)]


# --- the fixture ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drills")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    try:
        with sandbox_settings(env):                 # whipup code in this process: this sandbox
            roles = cluster_roles(tmp, "drills", make_network(env, SANDBOX))
            c = Cluster(env, roles, tmp, "drills")
            start = time.monotonic()
            c.fab("whip-up-full-system", timeout=1800)
            print(f"\ndrills: cold whip-up-full-system {time.monotonic() - start:.0f} s")
            c.load()
            assert c.page()[0] == c.current()
            yield c
    finally:
        fab("sandbox.down", env=env, check=False)


# --- the drills -----------------------------------------------------------------------------------------

SLOW_START = "\nimport time  # noqa: E402\ntime.sleep(4)   # drill: a release whose app takes 4 s to load\n"


def wait_all(runs: list[Background], timeout: float) -> None:
    """Wait for every run, noting when each ended."""
    deadline = time.monotonic() + timeout
    while None in [r.poll() for r in runs]:         # every run polled: each end time noted
        if time.monotonic() > deadline:
            for r in runs:
                r.wait(1)
        time.sleep(0.05)


def test_two_quick_updates_at_once_one_runs_the_other_is_refused_naming_the_holder(cl):
    """Two `fab quick-update --component web --no-deps --no-upgrade-django --yes` started together: the
    first to take the deploy lock deploys; the other exits 1 at once (while the first still runs), naming
    the holder (user@host, since when, which action of which release) and --break-lock. The release
    committed here loads its settings for 4 s, so the winner holds the lock long enough for the race
    to be a race whatever the start order."""
    from fabfile.deploy.lock import whoami

    before = cl.current()
    settings = cl.repo / "demo" / "settings.py"
    fast = settings.read_text()
    cl.commit("slow to load", {"demo/settings.py": fast + SLOW_START})
    runs = [cl.background(*QUICK_WEB, "--no-deps"), cl.background(*QUICK_WEB, "--no-deps")]
    wait_all(runs, 600)
    won = [r for r in runs if r.returncode == 0]
    lost = [r for r in runs if r.returncode != 0]
    report = "\n\n".join(f"exit {r.returncode} after {r.seconds:.1f} s\n{r.stdout}\n{r.stderr}" for r in runs)
    assert len(won) == 1 and len(lost) == 1, report
    won, lost = won[0], lost[0]
    print(f"\nconcurrent quick-updates: winner {won.seconds:.1f} s, refused after {lost.seconds:.1f} s")
    assert lost.returncode == 1, report
    release = re.search(r"^release (\S+) \(push ", won.stdout, re.M).group(1)
    assert f"is held by {whoami()} since " in lost.stderr, report
    assert re.search(r"since \S+Z \(\d+ s ago\), quick-update of release " + re.escape(release), lost.stderr), report
    assert "--break-lock" in lost.stderr, report
    assert lost.ended < won.ended - 2, report                   # refused at once, not after waiting
    assert not re.search(r"^release \S+ \(push ", lost.stdout, re.M), report     # it planned nothing ...
    assert "current ->" not in lost.stdout, report                                 # ... and switched nothing
    assert cl.current() == release != before and cl.page()[0] == release
    assert not cl.lock_held()
    cl.commit("fast to load", {"demo/settings.py": fast})


BROKEN_HEALTH = ("    return JsonResponse(body)\n",
                 "    return JsonResponse(dict(body, status='broken'), status=500)\n")


def test_a_deploy_whose_health_check_fails_is_undone_with_no_failed_request(cl):
    """A release whose /health answers 500, deployed under a steady load through the proxy on the page, a
    static file and /health itself. quick-update exits 1 and undoes itself: the new release is booted in
    app-0's idle gunicorn slot and asked for /health there before the switch, fails, its slot is stopped, it
    is removed, and the previous release keeps serving; it never receives a request, so the load sees 0
    failed requests, /health included. (Before whipup checked before the switch, the gate after the switch rolled back
    automatically, but the broken release served /health for the whole gate: 270 of 569 requests to it
    failed with a 5 s --health-timeout. A second app node would not have helped: nginx retries another
    upstream on 502/503, not on a 500.)"""
    good = cl.current()
    cl.commit("break /health", cl.edit("notes/views.py", *BROKEN_HEALTH))
    with Load(cl, ("/", "/static/notes/site.css", "/health")) as load:
        p = cl.fab(*QUICK_WEB, "--no-deps", "--health-timeout", "5", check=False)
    print(f"\nfailed health check: exit {p.returncode}; load {load.summary()}; errors {Counter(load.errors)}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "answered 500" in p.stderr and '"status": "broken"' in p.stderr, p.stderr
    assert "it never received traffic: the previous release keeps serving" in p.stderr, p.stderr
    assert "current ->" not in p.stdout, p.stdout                                # nothing was switched
    assert cl.current() == good and cl.page()[0] == good
    assert cl.get("/health")[0] == 200
    failed = re.search(r"^release (\S+) \(push ", p.stdout, re.M).group(1)
    assert failed not in cl.releases("app-0") and failed not in cl.releases("proxy-0")
    assert min(load.ok[path] for path in load.paths) >= 30, load.summary()    # steady load on every path
    assert sum(load.failed.values()) == 0, (load.summary(), load.errors[:10])
    assert not cl.lock_held()
    git(cl.repo, "revert", "--no-edit", "HEAD")


BROKEN_WORKER = ('app = Celery("demo")\n',
                 'raise RuntimeError("this release\'s Celery app is broken")\napp = Celery("demo")\n')


def test_a_release_failing_only_after_the_switch_is_rolled_back_automatically(cl):
    """A release whose celery worker cannot start (its Celery module raises; the web tier never imports it)
    passes every check before traffic and the health gate, goes live, then fails celery's restart, which
    comes after the gate: the deploy rolls back by itself, exit 1. The app node goes back to its previous
    slot, still running with every worker (the drain comes last), the proxies' upstream with it, the worker
    back on the previous release; the failed one is removed. Under a steady load the page, a static file and
    /health see 0 failed requests: both switches are graceful nginx reloads between two running slots."""
    good, worker = cl.current(), cl.current("worker-0")
    cl.commit("break the Celery app", cl.edit("demo/celery.py", *BROKEN_WORKER))
    try:
        with Load(cl, ("/", "/static/notes/site.css", "/health")) as load:
            p = cl.fab("quick-update", "--component", "all", "--no-upgrade-django", "--yes", "--no-deps",
                       check=False)
    finally:
        git(cl.repo, "revert", "--no-edit", "HEAD")
    print(f"\nfailure after the switch: exit {p.returncode}; load {load.summary()}; errors {Counter(load.errors)}")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "before any traffic" in p.stdout and "nginx: upstream -> " in p.stdout, p.stdout   # switched, then ...
    assert "restarting celery failed" in p.stderr and "rolled back to" in p.stderr, p.stderr
    back = re.search(r"^rolled back to (.*); it serves again$", p.stderr, re.M)
    assert back and set(back.group(1).split(", ")) == {good, worker}, p.stderr
    assert cl.current() == good and cl.page()[0] == good and cl.get("/health")[0] == 200
    assert cl.current("worker-0") == worker
    failed = re.search(r"^release (\S+) \(push ", p.stdout, re.M).group(1)
    assert failed not in cl.releases("app-0") and failed not in cl.releases("proxy-0")
    assert min(load.ok[path] for path in load.paths) >= 30, load.summary()
    assert sum(load.failed.values()) == 0, (load.summary(), load.errors[:10])
    assert not cl.lock_held()
    cl.fab("quick-update", "--component", "all", "--no-upgrade-django", "--yes", "--no-deps")   # workers on HEAD


def pip_on(pid1: int, run: Background, timeout: float = 300) -> tuple[int, str, list[int]]:
    """Wait for `pip install` (pip itself, not the shell around it) run over SSH on the host of PID 1
    `pid1`: (its pid, its command line, the sshd processes of its connection). A pip whose connection
    is gone (orphaned by an earlier cut, still finishing) has no sshd above it and does not count."""
    deadline = time.monotonic() + timeout
    while True:
        assert run.poll() is None, f"the deploy ended before pip was seen:\n{run.stdout}\n{run.stderr}"
        assert time.monotonic() < deadline, f"no pip install seen within {timeout} s"
        for pid in host_processes(pid1):
            argv = _argv(pid)
            if len(argv) > 2 and argv[1].endswith("/bin/pip") and argv[2] == "install":
                sshd = session_sshd(pid1, pid)
                if sshd:
                    return pid, " ".join(argv), sshd
        time.sleep(0.05)


def test_ssh_connection_cut_mid_deploy(cl):
    """quick-update --deps runs pip on app-0; meanwhile the sshd processes serving the deploy's SSH
    connection on app-0 are killed. The deploy fails, naming the node, the step and the lost connection;
    the previous release keeps serving through the proxy; the lock is released (the deploy, still running
    here, reconnects to release it), so a re-run needs nothing more.

    Then the other way a connection is cut: the deploying process itself dies (SIGKILL during pip, as
    when the laptop running fab goes away). Its lock stays, reported with who holds it, since when and
    how long ago, and as stale (its process on this machine is gone); a plain re-run takes it over and
    writes the interrupted deploy's audit line. A lock from another machine, whose holder cannot be
    proven gone, is refused naming --break-lock, which takes it over."""
    from fabfile.deploy.lock import whoami

    before = cl.current()
    cl.commit("after the cut", cl.edit("notes/templates/notes/index.html", "<h1>Notes</h1>", "<h1>Notes!</h1>"))
    pid1 = cl.host_pid1("app-0")
    run = cl.background(*QUICK_WEB, "--deps")
    pip, cmd, sshd = pip_on(pid1, run)
    names = [_cmdline(p) for p in sshd]
    for p in sshd:                                      # the socket's holder (innermost) first
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:                      # the monitor ends by itself once its child is gone
            pass
    run.wait(300)
    out = run.stdout + run.stderr
    print(f"\nSSH cut: killed {names} during pip; fab exit {run.returncode} after {run.seconds:.1f} s\n"
          f"{run.stderr.strip()}")
    assert run.returncode == 1, out
    assert "Traceback" not in run.stderr, out
    assert re.search(r"drills-app-0: \S+: pip install: the SSH connection was lost", run.stderr), out
    assert "nothing was switched: the previous release keeps serving" in run.stderr, out
    assert cl.page()[0] == before and cl.current() == before          # the previous release serves
    assert cl.get("/health")[0] == 200
    assert not cl.lock_held(), out
    assert "deploy lock: free" in cl.fab("releases").stdout

    # the deploying process gone with its connections: the lock stays, reported with holder and age, and
    # as stale (its holder, a process of this machine, is gone): a plain re-run takes it over
    run = cl.background(*QUICK_WEB, "--deps")
    pip_on(pid1, run)
    run.proc.kill()
    run.wait(60)
    assert cl.lock_held() and cl.page()[0] == before
    listing = cl.fab("releases").stdout
    assert re.search(rf"deploy lock: deploy lock on \S+ is held by {re.escape(whoami())} since \S+Z "
                     rf"\(\d+ (s|min) ago\), quick-update of release", listing), listing
    assert f"(stale: its process {run.proc.pid} on {socket.gethostname()} is gone; the next deploy takes it over)" \
        in listing, listing
    again = cl.fab(*QUICK_WEB, "--no-deps")
    assert re.search(rf"^deploy lock of {re.escape(whoami())} since \S+Z .*, quick-update of release \S+ is stale: "
                     rf"its process {run.proc.pid} on \S+ is gone; taken over$", again.stdout, re.M), again.stdout
    release = cl.current()
    assert release != before and cl.page()[0] == release
    assert "<h1>Notes!</h1>" in cl.get("/")[1]
    assert not cl.lock_held()
    assert re.search(rf"{re.escape(whoami())} quick-update interrupted: \(none\) -> \S+ \(all\): its process "
                     rf"{run.proc.pid} on \S+ is gone", cl.fab("releases").stdout)

    # a lock whose holder cannot be proven gone (another machine's) is refused, and --break-lock takes it
    theirs = json.dumps({"who": "ana@elsewhere", "since": "2024-01-31T12:00:00Z", "release": release,
                         "action": "deploy", "token": "0123456789abcdef", "host": "elsewhere", "pid": 4242,
                         "started": "x:1"})
    lock = f"/srv/{cl.cfg.app.name}/shared/deploy.lock"
    cl.ssh("app-0", f"sudo -n -u {cl.cfg.app.name} sh -c {shlex.quote(f'mkdir {lock} && printf %s {shlex.quote(theirs)} > {lock}/info')}")
    refused = cl.fab(*QUICK_WEB, "--no-deps", "--force", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert re.search(r"is held by ana@elsewhere since 2024-01-31T12:00:00Z \(\d+ h ago\)", refused.stderr)
    assert "if it is gone (interrupted, SSH cut), take the lock over with --break-lock" in refused.stderr
    again = cl.fab(*QUICK_WEB, "--no-deps", "--force", "--break-lock")
    assert "deploy lock taken over from ana@elsewhere" in again.stdout, again.stdout
    assert cl.current() != release and cl.page()[0] == cl.current()
    assert not cl.lock_held()


def _killed_at(cl: Cluster, marker: re.Pattern, *args: str) -> tuple[Background, str]:
    """`fab quick-update ARGS` killed with SIGKILL (as when the laptop running it goes away) as soon as its
    output shows `marker`: (the run, the release it was deploying)."""
    run = cl.background(*QUICK_WEB, *args)
    deadline = time.monotonic() + 300
    while not marker.search(run.stdout):
        assert run.poll() is None, f"the deploy ended before {marker.pattern!r}:\n{run.stdout}\n{run.stderr}"
        assert time.monotonic() < deadline, f"no {marker.pattern!r} within 300 s:\n{run.stdout}"
        time.sleep(0.02)
    run.proc.kill()
    run.wait(60)
    return run, re.search(r"^release (\S+) \(push ", run.stdout, re.M).group(1)


def _no_process_of(cl: Cluster, release: str, timeout: float = 15) -> None:
    """No process on any host still works on `release` (pip, migrate, tar, git...): each command the
    killed deploy started ended with its SSH session."""
    deadline = time.monotonic() + timeout
    while True:
        left = {node: [_cmdline(p) for p in host_processes(cl.host_pid1(node)) if release in _cmdline(p)]
                for node in ("proxy-0", "app-0", "worker-0")}
        if not any(left.values()):
            return
        assert time.monotonic() < deadline, f"orphans of the killed deploy {release}: {left}"
        time.sleep(0.5)


STAGES = [                                             # where the deploying process dies
    ("code", re.compile(r"^\[\S+\] code: ", re.M), ("--no-deps",)),
    ("pip", re.compile(r"^\[\S+\] venv: pip install \(", re.M), ("--deps",)),
    ("collectstatic+migrate", re.compile(r"^\[\S+\] collectstatic: ", re.M), ("--no-deps",)),
    ("static+health", re.compile(r"^\[\S+\] static: ", re.M), ("--no-deps",)),
    ("switch", re.compile(r"^\[\S+\] nginx: upstream -> ", re.M), ("--no-deps",)),
]


def test_a_deploy_killed_at_each_stage_then_a_plain_re_run(cl):
    """For each stage of a deploy, a quick-update is killed with SIGKILL there; then a plain re-run (no
    flag). Each time: the stale lock is recognised (its holder's process on this machine is gone) and taken
    over, the interrupted deploy gets its audit line, no process of the killed deploy is left on any host
    (what it started over SSH ended with its session), its half-made release is not left behind as a
    release, and the site served throughout: 0 failed requests for the page and a static file under load."""
    from fabfile.deploy.lock import whoami

    figures = []
    with Load(cl, ("/", "/static/notes/site.css")) as load:
        for n, (stage, marker, args) in enumerate(STAGES):
            cl.commit(f"killed at {stage}", cl.edit("notes/templates/notes/index.html", "</h1>", f" {n}</h1>"))
            run, killed = _killed_at(cl, marker, *args)
            _no_process_of(cl, killed)
            assert cl.lock_held(), f"{stage}: {run.stdout}"
            start = time.monotonic()
            again = cl.fab(*QUICK_WEB, "--no-deps")
            rerun = time.monotonic() - start
            assert re.search(rf"quick-update of release {killed} is stale: its process {run.proc.pid} on \S+ is "
                             rf"gone; taken over$", again.stdout, re.M), f"{stage}: {again.stdout}"
            listing = cl.fab("releases").stdout
            assert re.search(rf"{re.escape(whoami())} quick-update interrupted: \(none\) -> {killed} ", listing), \
                f"{stage}: {listing}"
            assert "partial" not in listing, f"{stage}: {listing}"
            for node in ("proxy-0", "app-0"):
                if stage == "switch":             # it went live before the kill: kept, as a release to go back to
                    assert killed in cl.releases(node), f"{stage}: {node}"
                else:                             # half made: the re-run's prune removed it
                    assert killed not in cl.releases(node), f"{stage}: {node}: {cl.releases(node)}"
            assert not cl.lock_held() and cl.page()[0] == cl.current()
            assert f" {n}</h1>" in cl.get("/")[1], f"{stage}: the re-run's code does not serve"
            figures.append(f"{stage}: killed after {run.seconds:.1f} s, re-run {rerun:.1f} s")
    print("\nkilled at each stage: " + "; ".join(figures) + f"\n  load: {load.summary()}")
    assert sum(load.failed.values()) == 0, load.errors[:10]
    assert sum(load.ok.values()) > 0


def test_a_db_node_stopped_and_started_keeps_its_data_and_the_app_recovers(cl):
    """The db instance is stopped (its services shut down through their init scripts, disk kept) and
    started again. While it is down the app says so (/health 503 through the proxy).

    The host's boot starts PostgreSQL (configure enabled it at boot, as systemd does on AWS), so the site
    recovers with no configure run: /health answers 200 through the proxy before any fab command.
    What a user may run after the start: `fab whip-up-full-system`, the command that brings the cluster to
    what roles.yaml says from any state; its configure step finds postgresql already running; deploy brings
    every node to the app's HEAD (the earlier drills' web-only quick-updates left the worker behind); the
    check asks the site through the proxy. The rows written before are there and new ones can be written."""
    text = f"before the db stop {time.time_ns()}"
    cl.add_note(text)
    assert text in cl.page()[1]
    db = cl.nodes["db-0"].instance_id
    cl.ec2.stop_instances(InstanceIds=[db])
    cl.wait_state("db-0", "stopped")
    deadline = time.monotonic() + 60
    waited = []
    while (status := _status(cl, "/health")) != 503:   # "no answer": the app still waits on its old connection
        waited.append(status)
        assert time.monotonic() < deadline, f"/health answers {waited} with the db node stopped"
        time.sleep(0.5)
    print(f"\ndb stopped: /health 503 after {waited or 'no wait'}")
    cl.ec2.start_instances(InstanceIds=[db])
    cl.wait_state("db-0", "running")
    start = time.monotonic()
    cl.wait_health(120)                                # no configure run: the boot started PostgreSQL
    print(f"\ndb stopped and started: /health 200 {time.monotonic() - start:.0f} s after the start, no fab run")
    assert text in cl.page()[1]
    p = cl.fab("whip-up-full-system", timeout=900)
    assert not re.search(r"^\[drills-db-0\] .*start postgresql", p.stdout, re.M), p.stdout
    assert "0 mutating API calls" in p.stdout and "launched" not in p.stdout, p.stdout
    assert p.stdout.rstrip().endswith(f"site: http://{cl.proxy_ip}/"), p.stdout[-2000:]
    cl.load()
    assert cl.nodes["db-0"].instance_id == db
    cl.wait_health(30)
    release, rows = cl.page()
    assert text in rows and release == cl.current()
    after = f"after the db start {time.time_ns()}"
    cl.add_note(after)
    assert {text, after} <= set(cl.page()[1])


def _status(cl: Cluster, path: str) -> int | str:
    """The proxy's status for `path`, or "no answer" within the client's timeout. With its only app node
    gone the site fails one of three ways: 502 (refused), 504 (nginx's connect timeout), or no answer in
    time: nginx waits on a keepalive connection to the lost node, whose address now drops every packet (the
    local cloud's security groups, like a VPC, answer nothing for an address no instance holds)."""
    try:
        return cl.get(path)[0]
    except TimeoutError:
        return "no answer"


def test_a_lost_app_node_is_rebuilt_by_whip_up_with_the_rows_intact(cl):
    """The app instance is terminated (its disk goes with it). The site fails (502 or 504 from the proxy, or
    no answer in time);
    `fab whip-up-full-system` launches exactly that node again (the other instances are the same), and
    configures it and deploys to it the release the cluster serves (not a new release everywhere); the site
    serves again with every row."""
    serving = cl.current("proxy-0")
    text = f"before the app node was lost {time.time_ns()}"
    cl.add_note(text)
    rows = cl.page()[1]
    assert text in rows
    kept = {name: n.instance_id for name, n in cl.nodes.items() if name != "app-0"}
    lost = cl.nodes["app-0"].instance_id
    cl.ec2.terminate_instances(InstanceIds=[lost])
    cl.wait_state("app-0", "terminated")
    deadline = time.monotonic() + 30
    while (status := _status(cl, "/")) not in (502, 504, "no answer"):
        assert time.monotonic() < deadline, f"the site answers {status} with its only app node gone"
        time.sleep(0.5)
    start = time.monotonic()
    p = cl.fab("whip-up-full-system", timeout=1800)
    print(f"\nnode lost: whip-up-full-system rebuilt it in {time.monotonic() - start:.0f} s")
    launched = re.findall(r"^\w+: launched (\S+)", p.stdout, re.M)
    assert launched == [f"{cl.cfg.cluster.name}-app-0"], p.stdout
    cl.load()
    assert cl.nodes["app-0"].instance_id != lost
    assert {name: n.instance_id for name, n in cl.nodes.items() if name != "app-0"} == kept
    assert p.stdout.rstrip().endswith(f"site: http://{cl.proxy_ip}/"), p.stdout[-2000:]
    release, now = cl.page()
    assert release == cl.current("app-0") == serving == cl.current("proxy-0"), (release, serving)
    assert f"rebuild: {cl.cfg.cluster.name}-app-0 get release {serving}" in p.stdout, p.stdout
    assert set(rows) <= set(now)
    assert cl.get("/health")[0] == 200
