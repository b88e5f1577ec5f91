"""The proxy's certificate commands: exact argv, quoting, and the scripts run for real in a temp dir."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from fabfile.configure.templates import environment
from fabfile.tls import commands as cmd
from fabfile.tls.config import SiteConfig

SITE = SiteConfig(domain="shop.test", aliases=("www.shop.test",), mode="acme")


def test_certbot_argv():
    assert cmd.certbot_argv(SITE, "https://10.255.237.254:14000/dir") == [
        "certbot", "certonly", "--non-interactive", "--agree-tos", "--webroot", "-w", "/var/www/whipup-acme",
        "--cert-name", "shop.test", "-d", "shop.test", "-d", "www.shop.test",
        "--server", "https://10.255.237.254:14000/dir", "--register-unsafely-without-email"]
    mailed = SiteConfig(domain="shop.test", mode="acme", email="ops@example.com")
    assert cmd.certbot_argv(mailed, "d")[-2:] == ["-m", "ops@example.com"]


def test_a_hostile_email_stays_one_argument():
    site = SiteConfig(domain="shop.test", mode="acme", email="x;whoami@example.com")
    line = next(li for li in cmd.acme(site, "https://d/dir").splitlines() if "certbot certonly" in li)
    words = shlex.split(line.split("|")[0])
    assert words[words.index("-m") + 1] == "x;whoami@example.com"


def test_directory():
    assert cmd.directory(SITE, "sandbox", "https://b:14000/dir") == "https://b:14000/dir"
    assert cmd.directory(SITE, "aws", None) == cmd.LETS_ENCRYPT
    staging = SiteConfig(domain="shop.test", mode="acme", staging=True)
    assert cmd.directory(staging, "aws", None) == cmd.LETS_ENCRYPT_STAGING
    with pytest.raises(ValueError):
        cmd.directory(SITE, "sandbox", None)


def test_acme_asks_only_when_names_differ_or_the_end_nears_and_links_the_live_files():
    script = cmd.acme(SITE, "https://d/dir")
    assert "if [ \"$have\" != 'shop.test www.shop.test' ] || ! openssl x509 -checkend 2592000" in script
    assert "ln -sfn /etc/letsencrypt/live/shop.test/fullchain.pem /etc/whipup/tls/site.crt.new" in script
    assert "ln -sfn /etc/letsencrypt/live/shop.test/privkey.pem /etc/whipup/tls/site.key.new" in script
    assert cmd.DEPLOY_HOOK in script and "nginx -s reload" in cmd.hook_text()


def test_parse_show():
    text = ("subject=CN=shop.test\nissuer=CN=Pebble Intermediate CA 1a2b\nnotAfter=Mar  1 20:00:00 2027 GMT\n"
            "serial=0A1B\n")
    assert cmd.parse_show(text) == {"subject": "CN=shop.test", "issuer": "CN=Pebble Intermediate CA 1a2b",
                                    "notAfter": "Mar  1 20:00:00 2027 GMT", "serial": "0A1B"}
    assert cmd.parse_show("none\n") == {}


@pytest.fixture
def tls_dir(tmp_path, monkeypatch) -> Path:
    """The scripts' paths moved under tmp_path, so they run here for real (openssl, ln, install)."""
    d = tmp_path / "tls"
    monkeypatch.setattr(cmd, "TLS_DIR", str(d))
    monkeypatch.setattr(cmd, "SITE_CERT", str(d / "site.crt"))
    monkeypatch.setattr(cmd, "SITE_KEY", str(d / "site.key"))
    monkeypatch.setattr(cmd, "WEBROOT", str(tmp_path / "webroot"))
    return d


def sh(script: str, stdin: str = "") -> str:
    p = subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def names_of(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_placeholder_then_self_signed_for_real(tls_dir):
    assert "placeholder" in sh(cmd.placeholder(SITE))
    assert (tls_dir / "site.crt").resolve() == tls_dir / "placeholder.crt"
    assert oct((tls_dir / "placeholder.key").stat().st_mode & 0o777) == "0o600"
    assert sh(cmd.placeholder(SITE)) == ""                      # already there: nothing made
    site = SiteConfig(domain="shop.test", aliases=("www.shop.test",), mode="self-signed")
    out = sh(cmd.self_signed(site)).split()
    assert "issued" in out and "linked" in out
    assert (tls_dir / "site.crt").resolve() == tls_dir / "self-signed.crt"
    assert names_of(tls_dir / "site.crt") == ["shop.test", "www.shop.test"]
    assert sh(cmd.self_signed(site)) == ""                      # already ok
    more = SiteConfig(domain="shop.test", aliases=("www.shop.test", "api.shop.test"), mode="self-signed")
    assert "issued" in sh(cmd.self_signed(more)).split()          # the names changed: made again
    assert names_of(tls_dir / "site.crt") == ["shop.test", "www.shop.test", "api.shop.test"]


def test_user_files_uploaded_by_stdin_for_real(tls_dir):
    dest = str(tls_dir / "user.key")
    assert sh(cmd.user_file(dest, "0600"), "KEY\n").split() == ["changed"]
    assert sh(cmd.user_file(dest, "0600"), "KEY\n") == ""
    assert oct(Path(dest).stat().st_mode & 0o777) == "0o600" and Path(dest).read_text() == "KEY\n"
    assert "KEY" not in cmd.user_file(dest, "0600")              # the content never is on the command line
    sh(cmd.user_file(str(tls_dir / "user.crt"), "0644"), "CRT\n")
    assert sh(cmd.user_files_linked(True)).split() == ["linked", "linked"]
    assert (tls_dir / "site.key").resolve() == Path(dest)


def render(site: SiteConfig) -> str:
    env = environment(Path(__file__).resolve().parents[2] / "templates")
    ctx = {"cluster": {"name": "c"}, "app": {"name": "demo", "current": "/srv/demo/current", "upstream": "/u"},
           "nodes": {"app": [{"name": "c-app-0"}]}, "media": {"mode": "local", "root": "/srv/demo/shared/media/"},
           "site": cmd.template_context(site)}
    return env.get_template("etc/nginx/sites-available/whipup.conf.j2").render(ctx)


def test_nginx_site_with_tls():
    text = render(SiteConfig(domain="shop.test", aliases=("www.shop.test",), mode="acme", hsts=600))
    assert "listen 443 ssl http2 default_server;" in text
    assert "server_name shop.test www.shop.test;" in text
    assert "ssl_certificate /etc/whipup/tls/site.crt;" in text and "ssl_certificate_key /etc/whipup/tls/site.key;" in text
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert 'add_header Strict-Transport-Security "max-age=600" always;' in text
    plain = text.split("server {")[1]                   # the port-80 server
    assert "listen 80 default_server;" in plain and "return 301 https://shop.test$request_uri;" in plain
    assert "location ^~ /.well-known/acme-challenge/" in plain and "root /var/www/whipup-acme;" in plain
    assert "location = /nginx-health" in plain
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert "Strict-Transport" not in render(SiteConfig(domain="shop.test", mode="acme"))


def test_nginx_site_without_tls_has_no_443():
    text = render(SiteConfig())
    assert "443" not in text and "ssl_" not in text and "return 301" not in text
    assert text.count("server {") == 1 and "listen 80 default_server;" in text and "server_name _;" in text


def test_proxy_curl_and_site_lines():
    from types import SimpleNamespace

    from fabfile.tls.check import proxy_curl, site_lines

    def cfg(site):
        return SimpleNamespace(cluster=SimpleNamespace(site=site))

    assert proxy_curl(cfg(SiteConfig())) == ("http://127.0.0.1", "")
    base, opts = proxy_curl(cfg(SITE))
    assert base == "https://shop.test" and shlex.split(opts) == [
        "-k", "--noproxy", "*", "--resolve", "shop.test:443:127.0.0.1"]
    assert site_lines(cfg(SITE), "10.0.0.5") == ["site: https://shop.test/"]
    assert site_lines(cfg(SiteConfig()), "10.0.0.5")[-1] == "site: http://10.0.0.5/"
    assert "plain HTTP" in site_lines(cfg(SiteConfig()), "10.0.0.5")[0]
    assert site_lines(cfg(SiteConfig(domain="shop.test")), "10.0.0.5")[-1] == "site: http://shop.test/"
