"""Boot script of a sandbox host: runs inside the guest as its first process.

Standard library only (the guest's python3). It plays the cloud's part:
drops the old root, configures the proxy, applies cloud-init user-data on the
first boot (the materializer has turned it into /run/whipup/cloud-config.json),
starts sshd, runs `runcmd`, then idles as tini's child.
"""
import base64
import gzip
import json
import os
import pwd
import grp
import subprocess
import sys
import time

SEED = "/run/whipup"
STATE = "/var/lib/whipup-cloud"
LOG = "/var/log/cloud-init.log"
OUTPUT_LOG = "/var/log/cloud-init-output.log"
HOST_KEY_TYPES = ("rsa", "dsa", "ecdsa", "ed25519")
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
    proxy = meta["proxy_url"]
    write("/etc/apt/apt.conf.d/80whipup-proxy",
          'Acquire::http::Proxy "%s";\nAcquire::https::Proxy "%s";\n' % (proxy, proxy))
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
    subprocess.run(["/usr/sbin/sshd"], check=True)
    log("sshd started (%s boot)" % ("first" if first_boot else "re"))
    if first_boot:
        run_commands(cfg, script)
        write(os.path.join(STATE, "instance-" + meta["instance_id"]), "%d\n" % time.time())
    log("boot finished")
    os.execv("/bin/sleep", ["sleep", "infinity"])


if __name__ == "__main__":
    main()
