"""The local cloud's DNS (Route53's zones -> dnsmasq's hosts file) and ACME server (pebble) builders."""
from __future__ import annotations

import ipaddress
import json
import ssl

from cryptography import x509

from fabfile.sandbox import acme, dns
from fabfile.sandbox.settings import load_settings

S = load_settings({"WHIPUP_SANDBOX_STATE": "/st", "WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.240.254"})


def test_dnsmasq_listens_on_the_bridge_only_and_asks_no_one():
    argv = dns.dnsmasq_argv(S)
    assert argv[0] == "dnsmasq"
    assert "--listen-address=10.255.240.254" in argv and "--bind-interfaces" in argv and "--port=53" in argv
    assert "--no-resolv" in argv and not any(a.startswith("--server") for a in argv)
    assert "--hostsdir=/st/run/dns" in argv and "--conf-file=/dev/null" in argv


def test_hosts_text_translates_elastic_ips_and_skips_other_types():
    records = [
        {"Name": "shop.test.", "Type": "A", "ResourceRecords": [{"Value": "54.1.2.3"}]},
        {"Name": "www.shop.test.", "Type": "A", "ResourceRecords": [{"Value": "54.1.2.3"}, {"Value": "10.1.1.1"}]},
        {"Name": "shop.test.", "Type": "NS", "ResourceRecords": [{"Value": "ns-1.example."}]},
        {"Name": "\\052.shop.test.", "Type": "A", "ResourceRecords": [{"Value": "54.1.2.3"}]},
    ]
    instances = [{"PublicIpAddress": "54.1.2.3", "PrivateIpAddress": "10.113.1.5", "State": {"Name": "running"}},
                 {"PublicIpAddress": "54.9.9.9", "PrivateIpAddress": "10.113.1.6", "State": {"Name": "terminated"}}]
    assert dns.address_map(instances) == {"54.1.2.3": "10.113.1.5"}
    assert dns.hosts_text(records, dns.address_map(instances)) == (
        "10.113.1.5 shop.test\n10.1.1.1 www.shop.test\n10.113.1.5 www.shop.test\n")


def test_write_if_changed(tmp_path):
    path = tmp_path / "route53"
    assert dns.write_if_changed(path, "10.0.0.1 a.test\n")
    assert not dns.write_if_changed(path, "10.0.0.1 a.test\n")
    assert dns.write_if_changed(path, "") and path.read_text() == ""
    assert [p.name for p in tmp_path.iterdir()] == ["route53"]


def test_pebble_config_on_the_bridge_validating_on_80_through_the_sandbox_dns():
    cfg = acme.pebble_config(S)["pebble"]
    assert cfg["listenAddress"] == "10.255.240.254:14000"
    assert cfg["managementListenAddress"] == "10.255.240.254:15000"
    assert (cfg["httpPort"], cfg["tlsPort"]) == (80, 443)
    assert cfg["certificate"] == "/st/acme/listener.pem" and cfg["privateKey"] == "/st/acme/listener.key"
    assert acme.pebble_argv(S, "/st/run/pebble.json") == [
        "pebble", "-config", "/st/run/pebble.json", "-dnsserver", "10.255.240.254:53"]
    assert S.acme_directory == "https://10.255.240.254:14000/dir"
    assert json.loads(json.dumps(acme.pebble_config(S)))


def test_listener_certificate_is_for_the_bridge_address_and_made_once(tmp_path):
    s = load_settings({"WHIPUP_SANDBOX_STATE": str(tmp_path), "WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.240.254"})
    assert acme.ensure_listener_cert(s)
    assert not acme.ensure_listener_cert(s)
    d = acme.acme_dir(s)
    assert oct((d / "listener.key").stat().st_mode & 0o777) == "0o600"
    leaf = x509.load_pem_x509_certificate((d / "listener.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.255.240.254")]
    ctx = ssl.create_default_context(cafile=str(acme.listener_ca_path(s)))
    ctx.load_cert_chain(d / "listener.pem", d / "listener.key")      # key and certificate match
    moved = load_settings({"WHIPUP_SANDBOX_STATE": str(tmp_path), "WHIPUP_SANDBOX_BRIDGE_ADDRESS": "10.255.241.254"})
    assert acme.ensure_listener_cert(moved)                          # another address: made again


def test_a_query_and_its_answer():
    q = dns.a_query("shop.test")
    assert q[12:] == b"\x04shop\x04test\x00\x00\x01\x00\x01"
    # an answer: the question echoed, one A record by a compression pointer, one CNAME skipped
    answer = (b"\x5a\x5a\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00" + q[12:]
              + b"\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x05\x00\x02\xc0\x0c"
              + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x0a\x71\x01\x05")
    assert dns.parse_a_answer(answer) == (0, ["10.113.1.5"])
    refused = b"\x5a\x5a\x81\x85\x00\x01\x00\x00\x00\x00\x00\x00" + q[12:]
    assert dns.parse_a_answer(refused) == (5, [])
    import pytest

    with pytest.raises(ValueError):
        dns.parse_a_answer(b"\x00\x01" + answer[2:])
