"""The site's Route53 records: zone choice, upserts only when they differ, a moved proxy moves them."""
from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest

from fabfile.errors import ProvisionError
from fabfile.provision import dns
from fabfile.provision.accounting import MutationCounter
from fabfile.tls.config import SiteConfig

SITE = SiteConfig(domain="shop.test", aliases=("www.shop.test",), mode="acme")


def test_zone_for_picks_the_longest_public_suffix():
    zones = [{"Id": "/hostedzone/A", "Name": "test."}, {"Id": "/hostedzone/B", "Name": "shop.test."},
             {"Id": "/hostedzone/P", "Name": "www.shop.test.", "Config": {"PrivateZone": True}},
             {"Id": "/hostedzone/C", "Name": "hop.test."}]
    assert dns.zone_for("www.shop.test", zones)["Id"] == "/hostedzone/B"
    assert dns.zone_for("shop.test", zones)["Id"] == "/hostedzone/B"
    assert dns.zone_for("other.test", zones)["Id"] == "/hostedzone/A"
    assert dns.zone_for("shop.example", zones) is None


def test_record_changes_only_for_what_differs():
    records = [{"Name": "shop.test.", "Type": "A", "ResourceRecords": [{"Value": "1.2.3.4"}]},
               {"Name": "www.shop.test.", "Type": "A", "ResourceRecords": [{"Value": "9.9.9.9"}]},
               {"Name": "shop.test.", "Type": "NS", "ResourceRecords": [{"Value": "ns1."}]}]
    assert dns.record_changes(["shop.test", "www.shop.test", "api.shop.test"], ["1.2.3.4"], records) == [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": name, "Type": "A", "TTL": dns.TTL,
                                                   "ResourceRecords": [{"Value": "1.2.3.4"}]}}
        for name in ("www.shop.test.", "api.shop.test.")]
    assert dns.record_changes(["shop.test"], ["1.2.3.4"], records) == []


def test_caller_reference_is_stable_per_cluster_and_zone():
    assert dns.caller_reference("c", "shop.test.") == dns.caller_reference("c", "shop.test.")
    assert dns.caller_reference("c", "shop.test.") != dns.caller_reference("d", "shop.test.")


@pytest.fixture
def route53(aws):
    return boto3.client("route53", region_name="us-east-1")


def a_records(route53) -> dict[str, list[str]]:
    out = {}
    for z in route53.list_hosted_zones()["HostedZones"]:
        for r in route53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]:
            if r["Type"] == "A":
                out[r["Name"]] = [v["Value"] for v in r["ResourceRecords"]]
    return out


def test_zone_made_once_records_upserted_then_already_ok_then_moved(route53):
    log: list[str] = []
    records = dns.SiteRecords(route53, "whipup-demo", log.append)
    assert records.ensure(SITE, ["203.0.113.7"]) == 2
    zones = route53.list_hosted_zones()["HostedZones"]
    assert [z["Name"] for z in zones] == ["shop.test."]
    assert a_records(route53) == {"shop.test.": ["203.0.113.7"], "www.shop.test.": ["203.0.113.7"]}
    counter = MutationCounter.of(route53)
    assert records.ensure(SITE, ["203.0.113.7"]) == 0
    assert counter.total == 0
    assert log[-1] == "dns: shop.test, www.shop.test -> 203.0.113.7: already ok"
    assert records.ensure(SITE, ["203.0.113.9"]) == 2            # the proxy rebuilt with another address
    assert a_records(route53) == {"shop.test.": ["203.0.113.9"], "www.shop.test.": ["203.0.113.9"]}
    assert len(route53.list_hosted_zones()["HostedZones"]) == 1


def test_an_existing_parent_zone_is_used(route53):
    route53.create_hosted_zone(Name="example.com.", CallerReference="user")
    dns.SiteRecords(route53, "c", lambda _m: None).ensure(SiteConfig(domain="shop.example.com"), ["203.0.113.7"])
    assert [z["Name"] for z in route53.list_hosted_zones()["HostedZones"]] == ["example.com."]
    assert a_records(route53) == {"shop.example.com.": ["203.0.113.7"]}


def test_no_address_is_an_error(route53):
    with pytest.raises(ProvisionError, match="elastic_ip: true"):
        dns.SiteRecords(route53, "c", lambda _m: None).ensure(SITE, [])


def test_provision_points_the_domain_at_the_proxys_elastic_ip(ec2, tmp_path, fast, monkeypatch):
    from test_tls_config import roles_with

    from fabfile.config import load_config
    from fabfile.nodes import find_nodes
    from fabfile.provision import tasks

    cfg = load_config(roles_with(tmp_path, domain="shop.test"))
    monkeypatch.setattr(tasks, "DEFAULT_TIMING", fast)
    monkeypatch.setattr(tasks, "open_cloud", lambda target, region: SimpleNamespace(
        client=lambda service: boto3.client(service, region_name=region)))
    tasks.provision_cluster(ec2, cfg, MutationCounter(), wait_ssh=False)
    proxy = find_nodes(ec2, "whipup-demo", role="proxy")[0]
    route53 = boto3.client("route53", region_name="us-east-1")
    assert a_records(route53) == {"shop.test.": [proxy.public_ip]}


def test_remove_deletes_the_sites_a_records_and_keeps_the_zone(route53):
    records = dns.SiteRecords(route53, "c", lambda _m: None)
    records.ensure(SITE, ["203.0.113.7"])
    zone = route53.list_hosted_zones()["HostedZones"][0]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "mail.shop.test.", "Type": "A", "TTL": 60,
                              "ResourceRecords": [{"Value": "203.0.113.99"}]}}]})
    assert records.remove(SITE) == 2
    assert a_records(route53) == {"mail.shop.test.": ["203.0.113.99"]}      # the user's own record stays
    assert records.remove(SITE) == 0
