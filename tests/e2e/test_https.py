"""HTTPS under the site's own names (#13), on a private sandbox (#13): one Wagtail project (made by `wagtail
start` at test time; its production settings import `settings/local.py`, the file a developer adds for their
own settings, which sets SECURE_SSL_REDIRECT = True) whipped up with cluster.domain shop.test on a proxy and
one app node.

Every client here resolves shop.test through the sandbox's DNS (dnsmasq on its bridge, fed from moto's
Route53) and trusts only the sandbox ACME server's root (pebble's, from the sandbox state): Python's ssl,
and a real browser (Debian's Chromium, headless, its /etc/resolv.conf the sandbox's in a mount namespace of
its own and pebble's root in a fresh NSS store). HTTP and HTTPS go only to this sandbox's proxy (checked
with `ip route get`); DNS only to the sandbox's bridge address.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import yaml
from cryptography import x509

from . import projects
from .conftest import ROOT, fab, make_network, sandbox_env
from .demo import DeployedCluster, git, sandbox_settings
from .traffic import Load

pytestmark = pytest.mark.e2e

SANDBOX = 13
DOMAIN = "shop.test"
LOCAL_SETTINGS = "SECURE_SSL_REDIRECT = True\n"
ARTIFACTS = Path(os.environ.get("WHIPUP_TEST_ARTIFACTS", ROOT / "tests" / "e2e" / "artifacts"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Site(DeployedCluster):
    def __init__(self, env: dict, tmp: Path, network: dict):
        self.env, self.tmp = env, tmp
        self.repo = projects.wagtail(tmp / "wagsite")
        (self.repo / "wagsite" / "settings" / "local.py").write_text(LOCAL_SETTINGS)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "local settings: HTTPS only")
        data = yaml.safe_load((ROOT / "roles.yaml").read_text())
        data["cluster"].update(network, name="https", state_dir=str(tmp / "state"), domain=DOMAIN)
        data["app"] = {"name": "wagsite", "repo": str(self.repo)}
        data.setdefault("configure", {})["templates_dir"] = str(ROOT / "templates")
        del data["roles"]["db"]                   # SQLite on the one app node: the smallest cluster with a proxy
        data["roles"]["worker"]["count"] = 0
        self.data = data
        self.roles = tmp / "roles.yaml"
        self.roles.write_text(yaml.safe_dump(data, sort_keys=False))
        self.ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{env['WHIPUP_SANDBOX_PORT']}",
                                region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        self.cfg, self.nodes = None, {}

    def fab(self, *args: str, check: bool = True, timeout: float = 2400, roles: Path | None = None):
        return fab(args[0], "--config", str(roles or self.roles), *args[1:], env=self.env, check=check,
                   timeout=timeout)

    def load(self) -> None:
        from fabfile.config import load_config
        from fabfile.nodes import find_nodes

        self.cfg = load_config(self.roles)
        self.nodes = {f"{n.role}-{n.index}": n for n in find_nodes(self.ec2, self.cfg.cluster.name)
                      if n.state == "running"}

    # --- as a visitor ---
    def resolve(self) -> str:
        from fabfile.sandbox.dns import resolve
        from fabfile.sandbox.settings import load_settings

        addresses = resolve(load_settings(self.env), DOMAIN)
        assert len(addresses) == 1, addresses
        self.routed(addresses[0])
        return addresses[0]

    def context(self) -> ssl.SSLContext:
        """Only the sandbox ACME server's root: no system CA."""
        return ssl.create_default_context(cafile=self.env["ACME_ROOT"])

    def https(self, path: str, address: str | None = None) -> tuple[int, str | None, bytes, x509.Certificate]:
        from fabfile.tls.check import get

        status, location, body, der = get(DOMAIN, address or self.resolve(), path, self.context())
        return status, location, body, x509.load_der_x509_certificate(der)

    def http(self, path: str) -> tuple[int, str | None]:
        from fabfile.tls.check import get

        status, location, _, _ = get(DOMAIN, self.resolve(), path, None, https=False)
        return status, location

    def serial(self) -> int:
        return self.https("/-/health")[3].serial_number


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("https")
    env = sandbox_env(tmp, SANDBOX)
    fab("sandbox.up", env=env)
    exports = dict(re.findall(r"^export (\w+)=(\S+)", fab("sandbox.env", env=env).stdout, re.M))
    env["ACME_ROOT"] = exports["WHIPUP_SANDBOX_ACME_ROOT"]
    try:
        s = Site(env, tmp, make_network(env, SANDBOX))
        start = time.monotonic()
        s.whipup = s.fab("whip-up-full-system", check=False)
        s.seconds = time.monotonic() - start
        with sandbox_settings(env):
            yield s
    finally:
        fab("sandbox.down", env=env, check=False)


def first_certificate_seconds(stdout: str) -> float:
    m = re.search(r"proxy-0: .*\(issued in ([0-9.]+) s\)", stdout)
    assert m, stdout[-3000:]
    return float(m.group(1))


def test_whip_up_ends_with_the_sites_https_address(site):
    out = site.whipup.stdout
    assert site.whipup.returncode == 0, out[-4000:] + site.whipup.stderr[-2000:]
    assert out.rstrip().endswith(f"site: https://{DOMAIN}/"), out[-2000:]
    assert "== certificate" in out and f"from this machine: GET https://{DOMAIN}/ -> 200" in out, out[-3000:]
    print(f"\nfigures: whip-up-full-system {site.seconds:.0f} s; first certificate "
          f"{first_certificate_seconds(out):.1f} s (certbot on the proxy, HTTP-01 against pebble)")
    site.load()


def test_a_visitor_trusting_only_pebble_gets_the_pages_the_static_files_and_a_redirect(site):
    assert site.resolve() == site.proxy_ip
    status, _, body, cert = site.https("/")
    assert status == 200, body[:500]
    assert DOMAIN in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "Pebble" in cert.issuer.rfc4514_string()
    static = re.search(r'href="(/static/[^"]+\.css)"', body.decode())
    assert static, body[:1000]
    assert site.https(static.group(1))[0] == 200
    assert site.https("/-/health")[0] == 200                    # the health check passes
    assert site.http("/some/page?x=1") == (301, f"https://{DOMAIN}/some/page?x=1")
    assert site.http("/nginx-health")[0] == 200
    # the project's own SECURE_SSL_REDIRECT is in force: gunicorn sends plain HTTP to HTTPS ...
    app = site.nodes["app-0"].private_ip
    plain = site.ssh("proxy-0", f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{app}:8000/")
    assert plain.startswith("301 https://"), plain
    # ... and what comes through the proxy is marked HTTPS (X-Forwarded-Proto): no redirect loop
    assert site.https("/")[0] == 200


def chromium(site, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the sandbox's DNS as its resolver (its own mount namespace, where
    /etc/resolv.conf is the sandbox's) and pebble's root as the only CA added to its (fresh) NSS store."""
    home = tmp / "home"
    nssdb = home / ".pki" / "nssdb"
    if not nssdb.exists():
        nssdb.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
        subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "whipup local cloud ACME root",
                        "-t", "C,,", "-i", site.env["ACME_ROOT"]], check=True)
    resolv = tmp / "resolv.conf"
    resolv.write_text(f"nameserver {site.env['WHIPUP_SANDBOX_BRIDGE_ADDRESS']}\noptions timeout:1 attempts:1\n")
    browser = shutil.which("chromium")
    argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args]
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    for _ in range(3):
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv),
                              *argv], capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(home)})
        # Chromium drops a page load when any interface of this machine changes (ERR_NETWORK_CHANGED): the
        # other end-to-end modules' sandboxes add and remove veths all the time. Nothing reached the site.
        if "ERR_NETWORK_CHANGED" not in run.stderr:
            break
    return run


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("certutil")),
                    reason="needs Debian's chromium and libnss3-tools (./setup.sh --test)")
def test_a_real_browser_loads_the_page_over_https(site, tmp_path):
    site.routed(site.resolve())
    dom = chromium(site, tmp_path, "--dump-dom", f"https://{DOMAIN}/")
    title = re.search(r"<title>\s*(.*?)\s*</title>", dom.stdout, re.S)
    assert title and title.group(1).startswith("Home"), (dom.stdout[:1500], dom.stderr[-1500:])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "test_https-home.png"
    shot.unlink(missing_ok=True)
    p = chromium(site, tmp_path, f"--screenshot={shot}", "--window-size=1280,800", f"https://{DOMAIN}/")
    assert shot.is_file() and shot.stat().st_size > 10_000, p.stderr[-1500:]
    print(f"\nchromium: title {title.group(1)!r}; screenshot {shot}")


def test_forced_renewal_under_load_serves_the_new_certificate_with_no_failed_request(site):
    before = site.serial()
    with Load(site, paths=("/", "/-/health"), threads=4, rate=8, max_seconds=120,
              tls=(DOMAIN, site.context())) as load:
        out = site.ssh("proxy-0", "sudo -n certbot renew --force-renewal --no-random-sleep-on-renew 2>&1")
        deadline = time.monotonic() + 30
        while (after := site.serial()) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        served = time.monotonic() - load.start           # the new certificate is served from here on
        time.sleep(4)
    print(f"\nrenewal under load: {load.summary()}; serial {before:x} -> {after:x}")
    assert after != before, out
    assert "Congratulations, all renewals succeeded" in out, out
    assert sum(1 for x in load.samples if x.start > served) >= 10       # requests on the new certificate too
    assert load.requests >= 40 and load.failures == 0, load.failures_at()


def test_a_terminated_proxy_comes_back_with_its_name_and_certificate(site):
    old = site.nodes["proxy-0"]
    site.ec2.terminate_instances(InstanceIds=[old.instance_id])
    site.ec2.get_waiter("instance_terminated").wait(InstanceIds=[old.instance_id],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    p = site.fab("whip-up-full-system", check=False)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert p.stdout.rstrip().endswith(f"site: https://{DOMAIN}/"), p.stdout[-2000:]
    site.load()
    new = site.nodes["proxy-0"]
    assert new.instance_id != old.instance_id
    assert site.resolve() == new.private_ip
    status, _, _, cert = site.https("/")
    assert status == 200 and "Pebble" in cert.issuer.rfc4514_string()


def test_without_a_domain_no_security_group_opens_443(site):
    def ports() -> set[int]:
        groups = site.ec2.describe_security_groups(
            Filters=[{"Name": "tag:whipup:cluster", "Values": [site.cfg.cluster.name]}])["SecurityGroups"]
        return {p.get("FromPort") for g in groups for p in g["IpPermissions"]}

    assert 443 in ports()
    data = json.loads(json.dumps(site.data))
    data["cluster"]["domain"] = None
    plain = site.tmp / "plain.yaml"
    plain.write_text(yaml.safe_dump(data, sort_keys=False))
    site.fab("provision", roles=plain)
    assert 443 not in ports() and 80 in ports()
