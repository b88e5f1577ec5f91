"""The hosts' package cache: apt-cacher-ng on the bridge address, between the hosts' apt and the mirror.

On AWS every node fetches its packages from a mirror in its region at its own bandwidth. On the local cloud
every host shares this machine's one link, so four nodes installing git, Python and supervisor at once
fetched each package four times, one after another, while the machine's cores sat idle (a cold whip-up of
the four default roles spent ~15 s that way). apt-cacher-ng, Debian's caching proxy for apt, fetches each
file once and serves every host that asks, even while the download is still going; its cache is kept in
the sandbox's state dir across `sandbox.down`. Only apt's plain-HTTP fetches go through it (apt checks
every file against its signed index); HTTPS and everything else still go through the forward proxy.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import procs
from .settings import SandboxSettings

DAEMON = "/usr/sbin/apt-cacher-ng"
SUPPORT_DIR = Path("/usr/lib/apt-cacher-ng")     # the package's own support files (its report page)

# apt-cacher-ng 3.7 moves a download it takes for stuck out of the way when a second client asks for the same
# file, and it takes one that has only just begun for stuck. Hosts running `apt-get update` together then
# ask for the same InRelease in the same second; the second move fails ("Failure to move file ... out of
# the way ... File exists" in apt-cacher.err), that client gets a 503, and apt-get update hangs after its
# "Ign" line (seen in CI: two of four nodes stuck until the 1800 s packages timeout; 16 clients on a fresh
# cache hit it within four rounds, none in 12 rounds of 20 with the check off). Off here: a download whose
# mirror stops answering still ends after the default NetworkTimeout (40 s).
NEVER_STUCK = 2**31 - 1


def conf_dir(settings: SandboxSettings) -> Path:
    return settings.run_dir / "apt-cacher-ng"


def conf(settings: SandboxSettings) -> str:
    """acng.conf of ours: only the bridge address, our own cache, log and socket (never the system's)."""
    return (
        "# whipup sandbox: the hosts' apt proxy (fabfile/sandbox/aptcache.py)\n"
        f"CacheDir: {settings.apt_cache_dir}\n"
        f"LogDir: {settings.state_dir / 'logs' / 'apt-cacher-ng'}\n"
        f"SupportDir: {SUPPORT_DIR}\n"
        f"Port: {settings.apt_cache_port}\n"
        f"BindAddress: {settings.bridge_address}\n"
        f"SocketPath: {settings.run_dir / 'apt-cacher-ng.socket'}\n"
        "ForeGround: 1\n"
        "ExThreshold: 4\n"
        "ReportPage: acng-report.html\n"
        "VerboseLog: 0\n"
        f"ResponseFreezeDetectTime: {NEVER_STUCK}\n"
    )


def argv(settings: SandboxSettings) -> list[str]:
    return [DAEMON, "-c", str(conf_dir(settings))]


def pidfile(settings: SandboxSettings) -> Path:
    return settings.run_dir / "aptcache.pid"


def start(settings: SandboxSettings, log, answers) -> None:
    """apt-cacher-ng up with our configuration (started again when that changed); `answers()` says it
    accepts connections. Without the package the hosts' apt goes through the forward proxy as before."""
    if shutil.which(DAEMON) is None:
        return log("apt cache: apt-cacher-ng is not installed: each host fetches every package itself "
                   "(apt-get install apt-cacher-ng, or ./setup.sh)")
    wanted, path = conf(settings), conf_dir(settings) / "acng.conf"
    if procs.read_pidfile(pidfile(settings)) and path.exists() and path.read_text() == wanted and answers():
        return log(f"apt cache: already up at {settings.apt_cache_url}")
    procs.stop_pidfile(pidfile(settings))
    for d in (conf_dir(settings), settings.apt_cache_dir, settings.state_dir / "logs" / "apt-cacher-ng"):
        d.mkdir(parents=True, exist_ok=True)
    path.write_text(wanted)
    logfile = settings.state_dir / "logs" / "aptcache.log"
    procs.spawn(argv(settings), logfile, pidfile(settings))
    procs.wait_ready(answers, pidfile(settings), logfile, "apt cache (apt-cacher-ng)",
                     f"listen on {settings.bridge_address}:{settings.apt_cache_port}", 10)
    log(f"apt cache: started at {settings.apt_cache_url} ({settings.apt_cache_dir})")


def apt_proxy(settings: SandboxSettings) -> str:
    """The hosts' proxy for apt's plain-HTTP fetches: the cache while it runs, else the forward proxy."""
    return settings.apt_cache_url if procs.read_pidfile(pidfile(settings)) else settings.proxy_url
