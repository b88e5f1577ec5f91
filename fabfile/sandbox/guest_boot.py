"""Boot script of a sandbox host: runs inside the guest as its first process.

Standard library only (the guest's python3). It plays the cloud's part:
drops the old root, configures the proxy, applies cloud-init user-data on the
first boot (the materializer has turned it into /run/whipup/cloud-config.json),
starts the services enabled at boot, starts sshd, runs `runcmd`, then idles as
tini's child.

Services at boot, as the host's own init would (these hosts have no systemd: their init is sysv-style,
the packages' /etc/init.d scripts and the rc?.d links update-rc.d manages): every S link of the default
runlevel (RUNLEVEL) is started, in rc's order (the links' names: number, then name), each with
`service NAME start`, as configure starts it. They start before sshd, so once a host answers SSH what its
boot starts is up (as `systemctl start` waits for a unit still starting). What started, in how long, and
what failed is logged to /var/log/cloud-init.log; the scripts' own output goes to /var/log/boot.log.

`python3 - shutdown` (this file on stdin: the materializer runs it inside a host it stops) is the other
end: every service that runs is stopped through its init script, the boot's in reverse order first, so
PostgreSQL shuts down cleanly and supervisord stops its programs.
"""
import base64
import gzip
import json
import os
import pwd
import grp
import re
import subprocess
import sys
import time

SEED = "/run/whipup"
STATE = "/var/lib/whipup-cloud"
LOG = "/var/log/cloud-init.log"
OUTPUT_LOG = "/var/log/cloud-init-output.log"
HOST_KEY_TYPES = ("rsa", "dsa", "ecdsa", "ed25519")
BOOT_LOG = "/var/log/boot.log"
RUNLEVEL = "2"          # Debian's default runlevel (sysvinit's inittab: id:2:initdefault:); 2-5 are alike
SERVICE_TIMEOUT = 120   # seconds one init script may take to start or stop a service
RC_LINK = re.compile(r"S(\d\d)(.+)")   # fullmatch: a name with a newline is no link
# Init scripts that are not the host's services: ssh (the boot starts sshd itself, always, as a cloud image
# does), rc's own, and those that act on the machine rather than on the host (its clock, kernel settings,
# mounts, halting): a host's namespaces share those with the machine it runs on.
NOT_SERVICES = frozenset({"ssh", "rc", "rcS", "README", "skeleton", "sendsigs", "halt", "reboot", "killprocs",
                          "single", "hwclock.sh", "procps", "kmod", "udev", "mountall.sh", "mountkernfs.sh",
                          "mountdevsubfs.sh", "checkroot.sh", "checkfs.sh", "urandom"})
SUPPORTED = {"ssh_authorized_keys", "ssh_keys", "write_files", "runcmd", "disable_root",
             "ssh_pwauth", "hostname", "fqdn", "preserve_hostname"}


def log(msg):
    line = "%s whipup-cloud: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg)
    with open(LOG, "a") as f:
        f.write(line)
    sys.stderr.write(line)


def write(path, data, mode=0o644, owner=None, append=False):
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "ab" if append else "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    if owner:
        user, _, group = owner.partition(":")
        os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid if (group or user) else -1)


def configure_surroundings(meta):
    hostname = meta["hostname"]
    write("/etc/hostname", hostname + "\n")
    short = hostname.split(".")[0]
    write("/etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
          "%s %s %s\n" % (meta["private_ip"], hostname, short))
    if meta.get("nameserver"):   # the local cloud's DNS: Route53's zones (a refusal for any other name)
        if os.path.islink("/etc/resolv.conf"):
            os.unlink("/etc/resolv.conf")
        write("/etc/resolv.conf", "nameserver %s\noptions timeout:1 attempts:2\n" % meta["nameserver"])
    proxy = meta["proxy_url"]
    # apt's plain-HTTP fetches through the sandbox's package cache (aptcache.py), HTTPS through the proxy
    write("/etc/apt/apt.conf.d/80whipup-proxy",
          'Acquire::http::Proxy "%s";\nAcquire::https::Proxy "%s";\n' % (meta.get("apt_proxy_url", proxy), proxy))
    no_proxy = "localhost,127.0.0.1,::1,.internal," + ",".join(meta.get("no_proxy", []))
    env = ("http_proxy=%s\nhttps_proxy=%s\nHTTP_PROXY=%s\nHTTPS_PROXY=%s\nno_proxy=%s\nNO_PROXY=%s\n"
           "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n"
           "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n") % (
        proxy, proxy, proxy, proxy, no_proxy, no_proxy)
    write("/etc/environment", env)
    write("/etc/pip.conf", "[global]\nproxy = %s\ncert = /etc/ssl/certs/ca-certificates.crt\n" % proxy)
    write("/etc/gitconfig", "[http]\n\tproxy = %s\n" % proxy)
    write("/etc/sudoers.d/80whipup-proxy",
          'Defaults env_keep += "http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY"\n', 0o440)


def apply_cloud_config(cfg, user):
    for key in sorted(set(cfg) - SUPPORTED):
        log("unsupported cloud-config key %r: skipped" % key)
    keys = cfg.get("ssh_keys") or {}
    if keys:
        for name in os.listdir("/etc/ssh"):
            if name.startswith("ssh_host_"):
                os.unlink(os.path.join("/etc/ssh", name))
        for ktype in HOST_KEY_TYPES:
            if ktype + "_private" in keys:
                base = "/etc/ssh/ssh_host_%s_key" % ktype
                write(base, keys[ktype + "_private"].rstrip("\n") + "\n", 0o600)
                if ktype + "_public" in keys:
                    write(base + ".pub", keys[ktype + "_public"].rstrip("\n") + "\n", 0o644)
                log("host key %s installed from user-data" % ktype)
        for name in sorted(set(keys) - {t + s for t in HOST_KEY_TYPES for s in ("_private", "_public")}):
            log("unsupported ssh_keys entry %r: skipped" % name)
    authorized = cfg.get("ssh_authorized_keys") or []
    if authorized:
        pw = pwd.getpwnam(user)
        ssh_dir = os.path.join(pw.pw_dir, ".ssh")
        os.makedirs(ssh_dir, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        os.chown(ssh_dir, pw.pw_uid, pw.pw_gid)
        path = os.path.join(ssh_dir, "authorized_keys")
        write(path, "".join(k.strip() + "\n" for k in authorized), 0o600)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        log("%d authorized key(s) for %s" % (len(authorized), user))
    for i, wf in enumerate(cfg.get("write_files") or []):
        try:
            content = wf.get("content", "")
            enc = (wf.get("encoding") or "").lower()
            if enc in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
                content = base64.b64decode(content)
                if enc.startswith("gz"):
                    content = gzip.decompress(content)
            elif enc in ("gz", "gzip"):
                content = gzip.decompress(content if isinstance(content, bytes) else content.encode("latin-1"))
            mode = int(str(wf.get("permissions", "0644")), 8)
            write(wf["path"], content, mode, wf.get("owner"), bool(wf.get("append")))
            log("wrote %s" % wf["path"])
        except Exception as exc:  # one bad entry must not stop the boot
            log("write_files[%d]: %s" % (i, exc))


def ensure_host_keys():
    if not any(n.startswith("ssh_host_") and n.endswith("_key") for n in os.listdir("/etc/ssh")):
        subprocess.run(["ssh-keygen", "-A"], check=False)
        log("generated host keys")


def run_commands(cfg, script):
    cmds = cfg.get("runcmd") or []
    if not cmds and not script:
        return
    with open(OUTPUT_LOG, "ab") as out:
        env = dict(os.environ, PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        for cmd in cmds:
            argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            log("runcmd %r: exit %d" % (cmd, rc))
        if script:
            rc = subprocess.run([script], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
            log("user-data script: exit %d" % rc)


# --- services at boot and at shutdown ------------------------------------------------------------------

def is_service(name):
    return name not in NOT_SERVICES and not name.startswith(("umount", ".")) and "/" not in name


def start_sequence(entries):
    """The services an rc directory's entries start, in rc's order: the S links sorted by name (number,
    then name); each service once, named by what follows the number."""
    found = []
    for entry in sorted(entries):
        m = RC_LINK.fullmatch(entry)
        if m and is_service(m.group(2)) and m.group(2) not in found:
            found.append(m.group(2))
    return found


def stop_sequence(started, running):
    """The order to stop the `running` services in: those the boot starts (`started`, in boot order)
    in reverse, then any other (started by hand, or since disabled) by name, in reverse."""
    running = set(running)
    first = [s for s in reversed(started) if s in running]
    return first + sorted(running - set(first), reverse=True)


def service_argv(name, verb):
    """`service NAME VERB`: the script runs with a clean environment (service's own env -i), as configure
    runs it over SSH; `name` is one argument whatever it holds."""
    return ["service", name, verb]


def enabled_services(rc_dir):
    """The services rc_dir's S links start, in order; a link to a missing or non-executable script is logged."""
    try:
        entries = os.listdir(rc_dir)
    except FileNotFoundError:
        return []
    usable = []
    for entry in entries:
        if RC_LINK.fullmatch(entry) and not os.access(os.path.join(rc_dir, entry), os.X_OK):
            log("boot: %s/%s: no executable init script behind it: skipped" % (rc_dir, entry))
        else:
            usable.append(entry)
    return start_sequence(usable)


def run_service(name, verb, out):
    """Run `service NAME VERB` with its output appended to `out` (a binary file opened a+):
    (exit status or None on timeout, seconds, its last line of output)."""
    out.write(("--- %s %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), name, verb)).encode())
    out.flush()
    mark, started = out.tell(), time.monotonic()
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    try:
        rc = subprocess.run(service_argv(name, verb), stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, env=env, timeout=SERVICE_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        rc = None
    seconds = time.monotonic() - started
    out.seek(mark)
    lines = [ln for ln in out.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    out.seek(0, os.SEEK_END)
    return rc, seconds, (lines[-1].strip() if lines else "")


def outcome(name, verb, rc, seconds, last):
    if rc == 0:
        return "%s: %s in %.1f s" % (name, {"start": "started", "stop": "stopped"}[verb], seconds)
    why = "timed out after %d s" % SERVICE_TIMEOUT if rc is None else "exit %d" % rc
    return "%s: %s FAILED (%s%s; see %s)" % (name, verb, why, ": " + last if last else "", BOOT_LOG)


def start_services(rc_dir="/etc/rc%s.d" % RUNLEVEL):
    """Start what the default runlevel enables, in order; a failure is logged and the boot goes on."""
    names = enabled_services(rc_dir)
    failed = []
    with open(BOOT_LOG, "ab+") as out:
        for name in names:
            rc, seconds, last = run_service(name, "start", out)
            log("boot: " + outcome(name, "start", rc, seconds, last))
            if rc != 0:
                failed.append(name)
    log("boot: runlevel %s: %d service(s) started%s" % (
        RUNLEVEL, len(names) - len(failed), ", failed: " + " ".join(failed) if failed else ""))
    return failed


def running_services(initd="/etc/init.d"):
    """The init scripts whose `status` says their service runs."""
    found = []
    for name in sorted(os.listdir(initd)):
        if not (is_service(name) and os.access(os.path.join(initd, name), os.X_OK)):
            continue
        try:
            rc = subprocess.run(service_argv(name, "status"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=SERVICE_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            log("shutdown: %s: status timed out after %d s: taken as running" % (name, SERVICE_TIMEOUT))
            rc = 0
        if rc == 0:
            found.append(name)
    return found


VOLUME_MARK = "x-whipup.volume"   # fstab option of the data volumes whipup mounted (provision/volumes.py)
VOLUME_WAIT = 30                  # seconds a volume's device may take to appear (the cloud attaches it)


def volume_mounts(fstab_text):
    """[(device, mount point)] of fstab's whipup volumes."""
    out = []
    for line in fstab_text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#") and VOLUME_MARK in fields[3].split(","):
            out.append((fields[0], fields[1]))
    return out


def mount_volumes():
    """The data volumes mounted before any service starts (as systemd's local-fs.target would): the
    cloud makes a volume's block device once the host runs, so each is waited for a little."""
    try:
        with open("/etc/fstab") as f:
            wanted = volume_mounts(f.read())
    except OSError:
        return
    for dev, mp in wanted:
        if subprocess.run(["mountpoint", "-q", mp]).returncode == 0:
            continue
        deadline = time.monotonic() + VOLUME_WAIT
        while not os.path.exists(dev) and time.monotonic() < deadline:
            time.sleep(0.2)
        rc = subprocess.run(["mount", mp], capture_output=True, text=True)
        log("volume %s at %s: %s" % (dev, mp, "mounted" if rc.returncode == 0 else
                                      "NOT mounted: " + (rc.stderr.strip() or "no device")))


def shutdown():
    """Stop every running service through its init script, the boot's in reverse order first."""
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    order = stop_sequence(enabled_services("/etc/rc%s.d" % RUNLEVEL), running_services())
    log("shutdown: stopping %s" % (" ".join(order) or "no service"))
    with open(BOOT_LOG, "ab+") as out:
        for name in order:
            rc, seconds, last = run_service(name, "stop", out)
            log("shutdown: " + outcome(name, "stop", rc, seconds, last))


def main():
    subprocess.run(["umount", "-l", "/.oldroot"], check=False)
    try:
        os.rmdir("/.oldroot")
    except OSError:
        pass
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    with open(os.path.join(SEED, "meta.json")) as f:
        meta = json.load(f)
    os.makedirs(STATE, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs("/run/lock", mode=0o1777, exist_ok=True)
    configure_surroundings(meta)
    first_boot = not os.path.exists(os.path.join(STATE, "instance-" + meta["instance_id"]))
    cfg, script = {}, None
    if first_boot:
        cfg_path = os.path.join(SEED, "cloud-config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                cfg = json.load(f)
            apply_cloud_config(cfg, meta["default_user"])
        src = os.path.join(SEED, "user-script")
        if os.path.exists(src):
            script = os.path.join(STATE, "user-script")
            with open(src, "rb") as f:
                write(script, f.read(), 0o700)
    ensure_host_keys()
    mount_volumes()
    try:
        start_services()
    except Exception as exc:  # the host must still come up and answer SSH
        log("boot: starting the services failed: %s" % exc)
    subprocess.run(["/usr/sbin/sshd"], check=True)
    log("sshd started (%s boot)" % ("first" if first_boot else "re"))
    if first_boot:
        run_commands(cfg, script)
        write(os.path.join(STATE, "instance-" + meta["instance_id"]), "%d\n" % time.time())
    log("boot finished")
    os.execv("/bin/sleep", ["sleep", "infinity"])


if __name__ == "__main__":
    if sys.argv[1:] == ["shutdown"]:
        shutdown()
    else:
        main()
