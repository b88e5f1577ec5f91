"""The nightly backup on the db node (roles.db.backup: nightly HH:MM UTC, keep N): cron runs a script
whipup installs (`fab configure` does, on the db nodes), which takes a `pg_dump -Fc`, puts it in the
backups bucket (kind nightly), deletes the nightly ones beyond the `keep` newest, and leaves its result
in RESULT (JSON: ok, id, size, seconds, deleted, error) and a line in LOG: what a monitor reads.

Every S3 request is signed (SigV4, payload unsigned): on the local cloud with its keys (which are no secret),
on AWS with the db node's instance profile (provision/iam.py, BACKUPS: put, tag, list and delete under the
app's prefix), its temporary credentials read from the instance metadata (IMDSv2) at each run. Nothing
secret is on disk or on a command line: the upload is made by the script itself, not by curl.
"""
from __future__ import annotations

import json
import shlex

from ..media import SANDBOX_KEYS
from ..remote import install_stdin, run, sudo_sh
from .names import SUFFIX

SCRIPT = "/usr/local/sbin/whipup-nightly-backup"
CONF = "/etc/whipup/backup.json"
CRON = "/etc/cron.d/whipup-backup"
RESULT = "/var/lib/whipup/backup-nightly.json"
METRIC = "/var/lib/prometheus/node-exporter/whipup_backup.prom"   # read by the monitor (BackupTooOld)
LOG = "/var/log/whipup-backup.log"

NIGHTLY_PY = r'''#!/usr/bin/python3
"""whipup's nightly backup (managed by `fab configure`): pg_dump -Fc to the backups bucket, retention, result."""
import datetime, json, os, subprocess, sys, time, urllib.error, urllib.parse, urllib.request, xml.etree.ElementTree as ET

CONF, WORK = "/etc/whipup/backup.json", "/var/lib/postgresql/whipup-backup"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def request(method, url, body=None, headers=None, timeout=3600):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # S3 is reached directly
    with opener.open(urllib.request.Request(url, data=body, method=method, headers=headers or {}), timeout=timeout) as r:
        return r.read()


def s3(c, method, url, body=None, extra=None, tries=3):
    """One signed S3 request, tried again (fresh signature) on an error that is not the request's own fault."""
    for n in range(tries):
        if hasattr(body, "seek"):
            body.seek(0)
        try:
            return request(method, url, body, {**(extra or {}), **signed(c, method, url, extra)})
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or n == tries - 1:
                raise RuntimeError("%s %s: HTTP %s %s" % (method, url.split("?")[0], exc.code, exc.read()[:300]))
        except OSError:
            if n == tries - 1:
                raise
        time.sleep(2 ** n)


def credentials(c):
    """(access key, secret key, session token or None): the local cloud's keys, else the instance profile's
    from the instance metadata (IMDSv2: a session token first)."""
    if c.get("keys"):
        return c["keys"][0], c["keys"][1], None
    imds = c.get("imds", "http://169.254.169.254")
    try:
        token = request("PUT", imds + "/latest/api/token", b"", {"X-aws-ec2-metadata-token-ttl-seconds": "300"},
                        timeout=5).decode()
        head = {"X-aws-ec2-metadata-token": token}
        base = imds + "/latest/meta-data/iam/security-credentials/"
        role = request("GET", base, headers=head, timeout=5).decode().split()[0]
        got = json.loads(request("GET", base + role, headers=head, timeout=5))
    except Exception as exc:
        raise RuntimeError("no credentials for S3: the db node has no instance profile (run fab provision), "
                           "or the instance metadata did not answer: %s" % exc)
    return got["AccessKeyId"], got["SecretAccessKey"], got.get("Token")


def signed(c, method, url, extra=None):
    """SigV4 headers (payload unsigned) for one request, `extra` headers (x-amz-tagging) signed with them."""
    import hashlib, hmac
    access, secret, token = c["creds"]
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    head = {"host": u.netloc, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": stamp}
    head.update({k.lower(): v for k, v in (extra or {}).items()})
    if token:
        head["x-amz-security-token"] = token
    names = ";".join(sorted(head))
    query = "&".join(sorted(u.query.split("&"))) if u.query else ""
    canon = "\n".join([method, u.path, query, "".join(k + ":" + head[k] + "\n" for k in sorted(head)), names,
                       "UNSIGNED-PAYLOAD"])
    scope = day + "/" + c["region"] + "/s3/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canon.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, c["region"], "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    head["Authorization"] = ("AWS4-HMAC-SHA256 Credential=" + access + "/" + scope + ", SignedHeaders=" +
                             names + ", Signature=" + sig)
    del head["host"]
    return head


def put_file(c, url, path, tags):
    """The dump to `url` with its tags (a query string), streamed from disk. Its own content type: urllib's
    default is a form's, which a form parser (moto's) would eat."""
    with open(path, "rb") as body:
        s3(c, "PUT", url, body, {"x-amz-tagging": tags.replace(":", "%3A"), "Content-Type": "application/octet-stream",
                                 "Content-Length": str(os.path.getsize(path))})


def nightly_keys(c, base, app):
    xml = s3(c, "GET", base + "?list-type=2&prefix=" + urllib.parse.quote(app + "/", safe=""))
    keys = [e.text for e in ET.fromstring(xml).iter(NS + "Key")]
    return sorted(k for k in keys if k.endswith("-nightly" + SUFFIX))


def write_metric(path, ok, ended):
    """The monitor's metric (node_exporter's textfile collector): a failed run keeps the last success."""
    last = ended if ok else None
    try:
        for line in open(path):
            if last is None and line.startswith("whipup_backup_last_success_timestamp_seconds "):
                last = float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    gauges = [("last_run_timestamp_seconds", "Unix time the last backup run ended.", ended),
              ("last_run_success", "1 if the last backup run succeeded, 0 if it failed.", 1 if ok else 0)]
    if last is not None:
        gauges.insert(0, ("last_success_timestamp_seconds", "Unix time of the last successful backup.", last))
    text = "".join("# HELP whipup_backup_%s %s\n# TYPE whipup_backup_%s gauge\nwhipup_backup_%s %d\n"
                   % (name, doc, name, name, value) for name, doc, value in gauges)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def main():
    c = json.load(open(CONF))
    start, now = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    bid = now.strftime("%Y%m%dT%H%M%SZ") + "-nightly"
    key, base = c["app"] + "/" + bid + SUFFIX, c["endpoint"].rstrip("/") + "/" + c["bucket"]
    result = {"id": bid, "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "ok": False}
    path = os.path.join(WORK, bid + SUFFIX)
    try:
        os.makedirs(WORK, mode=0o700, exist_ok=True)
        subprocess.run(["chown", "postgres:postgres", WORK], check=True)
        subprocess.run(["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "-f", path, c["database"]], check=True)
        size = os.path.getsize(path)
        tags = "whipup:kind=nightly&whipup:time=" + urllib.parse.quote(result["at"]) + "&whipup:release=-&whipup:sha=-"
        c["creds"] = credentials(c)
        put_file(c, base + "/" + urllib.parse.quote(key), path, tags)
        old = nightly_keys(c, base, c["app"])
        gone = old[:-c["keep"]] if len(old) > c["keep"] else []
        for k in gone:
            s3(c, "DELETE", base + "/" + urllib.parse.quote(k))
        result.update(ok=True, key=key, size=size, deleted=gone)
    except Exception as exc:   # the result file says why
        result["error"] = str(exc)[:500]
    finally:
        if os.path.exists(path):
            os.remove(path)
    result["seconds"] = round(time.monotonic() - start, 1)
    os.makedirs(os.path.dirname(c["result"]), exist_ok=True)
    with open(c["result"] + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(c["result"] + ".tmp", c["result"])
    write_metric(c.get("metric", METRIC), result["ok"], time.time())
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


SUFFIX = "@SUFFIX@"
METRIC = "@METRIC@"
if __name__ == "__main__":
    sys.exit(main())
'''.replace("@SUFFIX@", SUFFIX).replace("@METRIC@", METRIC)


def conf_json(app: str, database: str, bucket: str, endpoint: str, keep: int, region: str,
              keys: tuple[str, str] | None) -> str:
    """The job's settings (`keys`: the local cloud's, which are no secret; none on AWS)."""
    return json.dumps({"app": app, "database": database, "bucket": bucket, "endpoint": endpoint, "keep": keep,
                       "result": RESULT, "metric": METRIC, "region": region, "keys": list(keys) if keys else None},
                      sort_keys=True) + "\n"


def cron_line(nightly: str) -> str:
    hour, minute = nightly.split(":")
    return (f"# whipup: the nightly backup (roles.db.backup); managed by fab configure\n"
            f"CRON_TZ=UTC\n{int(minute)} {int(hour)} * * * root {SCRIPT} >> {LOG} 2>&1\n")


def install_file(path: str, mode: str) -> str:
    """stdin to `path` (mode) when it differs; prints changed or unchanged."""
    return install_stdin(path, mode)


def remove_cron() -> str:
    return sudo_sh(f"if [ -e {shlex.quote(CRON)} ]; then rm -f {shlex.quote(CRON)}; echo changed; "
                   f"else echo unchanged; fi")


def hosts_s3(cfg) -> str:
    from .names import hosts_endpoint

    return hosts_endpoint(cfg) or f"https://s3.{cfg.cluster.region}.amazonaws.com"


def install_files(conn, files: list[tuple[str, str, str]]) -> list[str]:
    """Each (path, mode, text) installed over `conn`, all at once (a session each): what each printed. The
    first failure is raised, as one after the other would."""
    from concurrent.futures import ThreadPoolExecutor

    def one(file: tuple[str, str, str]) -> str:
        path, mode, text = file
        return run(conn, install_file(path, mode), step=f"install {path}", stdin=text).stdout.strip()

    if len(files) < 2:
        return [one(f) for f in files]
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        return list(pool.map(one, files))


def files_same(files: list[tuple[str, str, str]]) -> str:
    """As root: `same` when every (path, mode, text) holds its text already (by sha256: what install_stdin's
    cmp decides), else `differs`: a no-op configure checks the nightly job in one command."""
    import hashlib

    checks = " && ".join(f'[ "$(sha256sum < {shlex.quote(path)} 2>/dev/null | cut -c1-64)" = '
                         f'{hashlib.sha256(text.encode()).hexdigest()} ]' for path, _, text in files)
    return sudo_sh(f"if {checks}; then echo same; else echo differs; fi")


def ensure(conn, cfg, bucket: str) -> str:
    """The nightly job on one db node as roles.db.backup says; "changed" or "already ok"."""
    backup = cfg.role("db").backup
    keys = SANDBOX_KEYS if cfg.cluster.target == "sandbox" else None
    files = [(SCRIPT, "0755", NIGHTLY_PY), (CONF, "0644", conf_json(cfg.app.name, cfg.app.name, bucket, hosts_s3(cfg),
                                                                        backup.keep, cfg.cluster.region, keys))]
    if backup.nightly:
        files.append((CRON, "0644", cron_line(backup.nightly)))
        if run(conn, files_same(files), step="check the nightly job").stdout.strip() == "same":
            return "already ok"
    outs = install_files(conn, files[:2])          # the script and its settings at once (two sessions) ...
    outs += install_files(conn, files[2:])         # ... then the cron line that runs them
    if not backup.nightly:
        outs.append(run(conn, remove_cron(), step="remove the nightly cron job").stdout.strip())
    return "changed" if "changed" in outs else "already ok"



def bucket_ready(cfg) -> str | None:
    """The backups bucket's name when it exists already (read only: a head request), else None."""
    from .store import BackupStore

    if "db" not in cfg.role_names:
        return None
    return BackupStore.existing(cfg)


def ensure_all(cfg, nodes, out, connect_to=None, bucket: str | None = None) -> None:
    """`fab configure`'s last step: the nightly job on every running db node (the bucket made if missing);
    `connect_to`: ssh.connect's stand-in (configure's pooled connections); `bucket`: the backups bucket,
    known to exist (`bucket_ready`, asked alongside the run), or None to check (and make) it here."""
    from ..ssh import connect

    db = [n for n in nodes if n.role == "db" and n.state == "running"]
    if not db or "db" not in cfg.role_names:
        return
    if bucket is None:
        from .store import BackupStore

        store = BackupStore.open(cfg)
        store.ensure()
        bucket = store.bucket
    backup = cfg.role("db").backup
    for node in db:
        conn = (connect_to or connect)(cfg, node)
        try:
            done = ensure(conn, cfg, bucket)
        finally:
            conn.close()
        when = f"nightly at {backup.nightly} UTC, the {backup.keep} newest kept" if backup.nightly else "no nightly"
        out(f"[{node.name}] backup: {when} (s3://{bucket}/{cfg.app.name}/): {done}")
