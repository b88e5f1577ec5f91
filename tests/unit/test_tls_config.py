"""cluster.domain / aliases / tls / acme / hsts: parsed with key-path errors; port 443 follows TLS."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabfile.config import ConfigError, load_config
from fabfile.provision import builders
from fabfile.provision.builders import Grant
from fabfile.tls.config import HSTS_YEAR

from conftest import SHIPPED_ROLES
from test_provision import run


def roles_with(tmp_path: Path, **cluster) -> Path:
    data = yaml.safe_load(SHIPPED_ROLES.read_text())
    data["cluster"].update(cluster)
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    if not (tmp_path / "examples").exists():
        (tmp_path / "examples").symlink_to(SHIPPED_ROLES.parent / "examples")
    return path


def site(tmp_path, **cluster):
    return load_config(roles_with(tmp_path, **cluster)).cluster.site


def error(tmp_path, **cluster) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(roles_with(tmp_path, **cluster))
    return str(exc.value)


def test_no_domain_means_plain_http():
    s = load_config(SHIPPED_ROLES).cluster.site
    assert (s.domain, s.mode, s.tls, s.names, s.hsts) == (None, "off", False, (), 0)


def test_a_domain_defaults_to_acme(tmp_path):
    s = site(tmp_path, domain="shop.test", aliases=["www.shop.test"])
    assert (s.domain, s.aliases, s.mode, s.tls, s.staging) == ("shop.test", ("www.shop.test",), "acme", True, False)
    assert s.names == ("shop.test", "www.shop.test")


def test_trailing_dot_staging_email_hsts(tmp_path):
    s = site(tmp_path, domain="shop.example.com.", acme={"staging": True, "email": "ops@example.com"}, hsts=True)
    assert (s.domain, s.staging, s.email, s.hsts) == ("shop.example.com", True, "ops@example.com", HSTS_YEAR)
    assert site(tmp_path, domain="a.test", hsts=600).hsts == 600


def test_self_signed_and_off(tmp_path):
    assert site(tmp_path, domain="shop.test", tls="self-signed").mode == "self-signed"
    off = site(tmp_path, domain="shop.test", tls="off")
    assert (off.mode, off.tls, off.domain) == ("off", False, "shop.test")


def test_user_certificate_files(tmp_path):
    (tmp_path / "site.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "site.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    s = site(tmp_path, domain="shop.test", tls={"certificate": "site.crt", "key": "site.key"})
    assert (s.mode, s.certificate, s.key) == ("files", tmp_path / "site.crt", tmp_path / "site.key")


@pytest.mark.parametrize("cluster, where", [
    ({"domain": "Shop.Test"}, "cluster.domain: expected a lower-case DNS name"),
    ({"domain": "localhost"}, "cluster.domain: expected a DNS name like shop.example.com"),
    ({"domain": "shop.test; whoami"}, "cluster.domain: expected a DNS name"),
    ({"domain": "-a.test"}, "cluster.domain: expected a DNS name"),
    ({"domain": 7}, "cluster.domain: expected a DNS name like shop.example.com, got an integer"),
    ({"aliases": ["www.shop.test"]}, "cluster.aliases: needs cluster.domain"),
    ({"domain": "shop.test", "aliases": ["shop.test"]}, "cluster.aliases[0]: shop.test is named twice"),
    ({"domain": "shop.test", "aliases": ["a.shop.test", "bad_name"]}, "cluster.aliases[1]: expected a DNS name"),
    ({"tls": "acme"}, "cluster.tls: acme needs cluster.domain"),
    ({"domain": "shop.test", "tls": "letsencrypt"}, "cluster.tls: expected acme, self-signed, off or"),
    ({"domain": "shop.test", "tls": {"certificate": "nope.crt"}}, "cluster.tls.key: required"),
    ({"domain": "shop.test", "tls": {"certificate": "nope.crt", "key": "nope.key"}},
     "cluster.tls.certificate: file not found"),
    ({"domain": "shop.test", "acme": {"staging": "yes"}}, "cluster.acme.staging: expected true or false"),
    ({"domain": "shop.test", "acme": {"mail": "x"}}, "cluster.acme.mail"),
    ({"domain": "shop.test", "acme": {"email": "nobody"}}, "cluster.acme.email: expected an e-mail address"),
    ({"domain": "shop.test", "hsts": -1}, "cluster.hsts: expected an integer"),
    ({"hsts": True}, "cluster.hsts: needs TLS"),
])
def test_errors_name_the_key(tmp_path, cluster, where):
    assert where in error(tmp_path, **cluster)


def test_user_files_must_hold_pem(tmp_path):
    (tmp_path / "site.crt").write_text("not a certificate\n")
    (tmp_path / "site.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    assert "cluster.tls.certificate: " in error(tmp_path, domain="a.test", tls={"certificate": "site.crt",
                                                                                "key": "site.key"})
    (tmp_path / "site.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "site.key").write_text("secret\n")
    assert "holds no PEM private key" in error(tmp_path, domain="a.test", tls={"certificate": "site.crt",
                                                                                "key": "site.key"})


def test_443_only_with_tls():
    proxy = load_config(SHIPPED_ROLES).role("proxy")
    assert {r.port for r in builders.site_rules(proxy, False)} == {80}
    assert {r.port for r in builders.site_rules(proxy, True)} == {80, 443}
    bare = proxy.__class__(**{**proxy.__dict__, "ports": tuple(r for r in proxy.ports if r.port == 80)})
    assert builders.desired_grants(bare, "10.0.0.1/32", {}, tls=True) == {
        Grant("tcp", 22, 22, "cidr", "10.0.0.1/32"), Grant("tcp", 80, 80, "cidr", "0.0.0.0/0"),
        Grant("tcp", 443, 443, "cidr", "0.0.0.0/0")}


def _ports(ec2, cluster: str) -> set[int]:
    groups = ec2.describe_security_groups(Filters=[{"Name": "tag:whipup:cluster", "Values": [cluster]}])
    return {p.get("FromPort") for g in groups["SecurityGroups"] for p in g["IpPermissions"]}


def test_without_a_domain_no_group_opens_443_and_a_domain_opens_it(ec2, tmp_path, fast):
    plain = load_config(roles_with(tmp_path))
    run(ec2, plain, fast)
    assert 443 not in _ports(ec2, "whipup-demo") and 80 in _ports(ec2, "whipup-demo")
    run(ec2, load_config(roles_with(tmp_path, domain="shop.test")), fast)
    assert 443 in _ports(ec2, "whipup-demo")
    run(ec2, plain, fast)           # the domain removed: 443 is revoked again
    assert 443 not in _ports(ec2, "whipup-demo")


def test_acme_gives_the_proxy_certbot_and_cron(tmp_path):
    cfg = load_config(roles_with(tmp_path, domain="shop.test"))
    proxy = cfg.role("proxy")
    assert proxy.packages == ("nginx", "certbot", "cron") and proxy.services == ("nginx", "cron")
    assert cfg.role("app").packages == load_config(SHIPPED_ROLES).role("app").packages
    plain = load_config(roles_with(tmp_path, domain="shop.test", tls="self-signed")).role("proxy")
    assert (plain.packages, plain.services) == (("nginx",), ("nginx",))


def test_status_lines_without_ssh(tmp_path):
    from fabfile.tls.stage import status_lines

    assert status_lines(load_config(SHIPPED_ROLES), []) == [
        "site: no domain (plain HTTP on the proxy's address; set cluster.domain for HTTPS)"]
    cfg = load_config(roles_with(tmp_path, domain="shop.test", aliases=["www.shop.test"]))
    assert status_lines(cfg, []) == ["site: shop.test, www.shop.test (tls acme)"]     # no proxy running: no cert
