"""Media in S3 (#11 item 8): the bucket's name, the app's environment, the proxy's /media/, and provision's
create / reuse / destroy of the bucket on moto in-process."""
from __future__ import annotations

import dataclasses
import json
import shutil

import boto3
import pytest
from invoke import Context

from fabfile.config import load_config
from fabfile.configure.templates import context, rehearsal_nodes, render_role_files
from fabfile.errors import ProvisionError
from fabfile.media import (REQUIREMENTS, S3_OPTIONS, MediaSite, bucket_name, media_env, nginx_media,
                           record_path, rehearsal_site, site, site_of, valid_bucket_name)
from fabfile.provision import tasks
from fabfile.provision.accounting import MutationCounter, is_mutating
from fabfile.provision.media import MediaBucket, create_bucket_params, describe, read_policy
from fabfile.sandbox.settings import ACCOUNT_ID

ACCOUNT = "123456789012"
GATE = "http://10.255.250.254:8898"


# --- the bucket's name ------------------------------------------------------------------------------------

def test_bucket_name_is_cluster_account_region():
    assert bucket_name("whipup-demo", ACCOUNT, "us-east-1") == "whipup-demo-media-123456789012-us-east-1"


@pytest.mark.parametrize("cluster", ["a", "a" * 40, "a" * 39 + "b", "x-" * 19 + "yy", "xn--abc", "sthree-x",
                                     "amzn-s3-demo-x", "9", "a-" * 18 + "abcd"])
@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-3", "us-gov-west-1"])
def test_every_cluster_name_gives_a_valid_bucket_name(cluster, region):
    name = bucket_name(cluster, ACCOUNT, region)
    assert valid_bucket_name(name) and len(name) <= 63, name
    assert name.endswith(f"-media-{ACCOUNT}-{region}")


def test_long_names_that_share_their_start_stay_apart():
    a = bucket_name("a" * 39 + "b", ACCOUNT, "ap-southeast-3")
    b = bucket_name("a" * 39 + "c", ACCOUNT, "ap-southeast-3")
    assert a != b and len(a) == len(b) == 63
    assert bucket_name("c1", ACCOUNT, "us-east-1") != bucket_name("c1", "210987654321", "us-east-1")
    assert bucket_name("c1", ACCOUNT, "us-east-1") != bucket_name("c1", ACCOUNT, "eu-west-1")


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper-case", "under_score", "-lead", "trail-", "a..b",
                                  "192.168.1.2", "xn--abc", "sthree-abc", "abc-s3alias", "abc--ol-s3"])
def test_invalid_bucket_names(name):
    assert not valid_bucket_name(name)


# --- the app's environment -----------------------------------------------------------------------------------

SANDBOX = MediaSite("s3", "us-east-1", "c1-media-123456789012-us-east-1", GATE)
AWS = MediaSite("s3", "eu-west-1", "c1-media-123456789012-eu-west-1")


def test_media_env_on_the_sandbox():
    assert media_env(SANDBOX, public_host="10.101.1.5") == {
        "WHIPUP_MEDIA": "s3", "MEDIA_URL": "/media/",
        "AWS_STORAGE_BUCKET_NAME": "c1-media-123456789012-us-east-1", "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path", "AWS_S3_SIGNATURE_VERSION": "s3v4", "AWS_QUERYSTRING_AUTH": "false",
        "AWS_S3_FILE_OVERWRITE": "false", "AWS_S3_CUSTOM_DOMAIN": "10.101.1.5/media", "AWS_S3_URL_PROTOCOL": "http:",
        "AWS_S3_ENDPOINT_URL": GATE, "AWS_S3_ACCESS_KEY_ID": "testing", "AWS_S3_SECRET_ACCESS_KEY": "testing",
    }


def test_media_env_on_aws_names_no_endpoint_and_no_keys():
    env = media_env(AWS, public_host="shop.example.com", scheme="https")
    assert env["AWS_S3_ADDRESSING_STYLE"] == "virtual" and env["AWS_S3_REGION_NAME"] == "eu-west-1"
    assert env["AWS_S3_CUSTOM_DOMAIN"] == "shop.example.com/media" and env["AWS_S3_URL_PROTOCOL"] == "https:"
    assert not {"AWS_S3_ENDPOINT_URL", "AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY"} & set(env)


def test_media_env_local_and_the_overlay_table():
    assert media_env(MediaSite("local", "us-east-1"), public_host="h") == {"WHIPUP_MEDIA": "local",
                                                                           "MEDIA_URL": "/media/"}
    s3_names = set(media_env(SANDBOX, public_host="h")) - {"WHIPUP_MEDIA", "MEDIA_URL"}
    assert s3_names == set(S3_OPTIONS)      # every name the app gets is one the overlay hands on
    assert REQUIREMENTS == ("django-storages[s3]>=1.14.4,<2",)


@pytest.mark.parametrize("host", ["http://h", "h/media", "h; whoami", "", "h h", "h:port"])
def test_media_env_refuses_a_public_host_that_is_not_one(host):
    with pytest.raises(ValueError, match="public_host"):
        media_env(SANDBOX, public_host=host)


def test_media_env_refuses_an_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        media_env(SANDBOX, public_host="h", scheme="ftp")


def test_media_urls_come_out_at_the_sites_media_path():
    """What django-storages' S3Storage.url() builds from these settings: '{protocol}//{custom_domain}/{key}'."""
    env = media_env(SANDBOX, public_host="10.101.1.5:8080")
    url = f"{env['AWS_S3_URL_PROTOCOL']}//{env['AWS_S3_CUSTOM_DOMAIN']}/uploads/a.png"
    assert url == "http://10.101.1.5:8080/media/uploads/a.png"


# --- the site a cluster has -------------------------------------------------------------------------------------

def _aws(cfg):
    return dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, target="aws"))


def _local(cfg):
    return dataclasses.replace(cfg, app=dataclasses.replace(cfg.app, media="local"))


def test_site_of_on_the_sandbox_is_motos_account_and_the_gate(cfg, monkeypatch):
    monkeypatch.setenv("WHIPUP_SANDBOX_BRIDGE_ADDRESS", "10.255.250.254")
    assert site_of(cfg) == MediaSite("s3", "us-east-1", f"whipup-demo-media-{ACCOUNT_ID}-us-east-1", GATE)
    assert site_of(_local(cfg)) == MediaSite("local", "us-east-1")


def test_site_of_on_aws_needs_provision_first_and_rehearsal_does_not(cfg):
    with pytest.raises(ProvisionError, match="run `fab provision` first"):
        site_of(_aws(cfg))
    assert rehearsal_site(_aws(cfg)).bucket == "whipup-demo-media-000000000000-us-east-1"
    record_path(cfg).parent.mkdir(parents=True)
    record_path(cfg).write_text(json.dumps({"account": "210987654321", "region": "us-east-1"}))
    assert site_of(_aws(cfg)).bucket == "whipup-demo-media-210987654321-us-east-1"
    record_path(cfg).write_text(json.dumps({"account": "210987654321", "region": "eu-west-1"}))   # another region's
    with pytest.raises(ProvisionError):
        site_of(_aws(cfg))


# --- the proxy's /media/ ----------------------------------------------------------------------------------------

@pytest.fixture
def shipped(roles_file):
    root = roles_file.parent
    shutil.copytree(tasks.__file__.rsplit("/fabfile/", 1)[0] + "/templates", root / "templates")
    return load_config(roles_file)


def _proxy_conf(cfg, media: MediaSite) -> str:
    nodes = rehearsal_nodes(cfg)
    proxy = next(n for n in nodes if n.role == "proxy")
    return render_role_files(cfg, proxy, nodes, media=media)[0].content


def _location(conf: str, prefix: str) -> list[str]:
    lines = conf.splitlines()
    start = lines.index(f"    location {prefix} {{")
    return [line.strip() for line in lines[start + 1:lines.index("    }", start)]]


def test_nginx_serves_media_from_the_bucket_through_the_sandbox_gate(shipped):
    media = site(shipped, ACCOUNT, GATE)
    body = _location(_proxy_conf(shipped, media), "/media/")
    assert body[0] == "limit_except GET { deny all; }   # read-only here: uploads go through the app"
    assert "proxy_pass http://10.255.250.254:8898/whipup-demo-media-123456789012-us-east-1/;" in body
    assert "proxy_set_header Host 10.255.250.254:8898;" in body
    assert 'proxy_set_header Authorization "";' in body and 'proxy_set_header Cookie "";' in body
    assert not any(line.startswith(("resolver", "alias")) for line in body)


def test_nginx_serves_media_from_s3_on_aws_with_a_resolver(shipped):
    cfg = _aws(shipped)
    body = _location(_proxy_conf(cfg, site(cfg, ACCOUNT, None)), "/media/")
    host = "whipup-demo-media-123456789012-us-east-1.s3.us-east-1.amazonaws.com"
    assert f"set $media_host {host};" in body and "proxy_pass https://$media_host;" in body
    assert "rewrite ^/media/(.*)$ /$1 break;" in body and f"proxy_set_header Host {host};" in body
    assert any(line.startswith("resolver 169.254.169.253 ") for line in body)


def test_nginx_with_local_media_aliases_shared_media(shipped):
    cfg = _local(shipped)
    conf = _proxy_conf(cfg, site_of(cfg))
    assert _location(conf, "/media/") == ["alias /srv/demo/shared/media/;", "expires 7d;"]
    assert "amazonaws" not in conf and "proxy_pass http://10.255" not in conf
    assert conf.count("{") == conf.count("}")


def test_template_context_media_without_a_site_given_is_the_clusters(shipped, monkeypatch):
    monkeypatch.setenv("WHIPUP_SANDBOX_BRIDGE_ADDRESS", "10.255.250.254")
    nodes = rehearsal_nodes(shipped)
    assert context(shipped, nodes[0], nodes)["media"] == nginx_media(site(shipped, ACCOUNT_ID, GATE), "/srv/demo/shared")


# --- provision: create, reuse, destroy (moto in-process) ---------------------------------------------------------

@pytest.fixture
def clients(aws):
    return boto3.client("s3", region_name="us-east-1"), boto3.client("sts", region_name="us-east-1")


def test_bucket_created_tagged_private_then_already_ok_with_no_change(cfg, clients, log):
    s3, sts = clients
    bucket = MediaBucket.open(cfg, s3, sts, GATE)
    assert bucket.name == f"whipup-demo-media-{ACCOUNT_ID}-us-east-1" and bucket.site.endpoint == GATE
    bucket.check()                                          # missing: fine, nothing made
    assert s3.list_buckets()["Buckets"] == []
    assert bucket.ensure(cfg, "vpc-1", log.append) is True
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket.name)["TagSet"]}
    assert tags == {"whipup:cluster": "whipup-demo", "Name": bucket.name}
    assert all(s3.get_public_access_block(Bucket=bucket.name)["PublicAccessBlockConfiguration"].values())
    assert json.loads(record_path(cfg).read_text()) == {"account": ACCOUNT_ID, "bucket": bucket.name,
                                                         "region": "us-east-1"}
    assert json.loads(s3.get_bucket_policy(Bucket=bucket.name)["Policy"]) == read_policy(bucket.name, "vpc-1")
    counter = MutationCounter()
    again = MediaBucket.open(cfg, counter.attach(s3), counter.attach(sts), GATE)
    assert again.ensure(cfg, "vpc-1", log.append) is False and counter.total == 0, counter.summary()
    assert again.ensure(cfg, "vpc-2", log.append) is False and counter.operations == {"PutBucketPolicy": 1}
    assert log == [f"media: bucket {bucket.name} created (us-east-1), readable from vpc-1",
                   f"media: bucket {bucket.name} already ok",
                   f"media: bucket {bucket.name}: read policy set (from vpc-2)"]
    assert not is_mutating("HeadBucket") and not is_mutating("HeadObject")


def test_a_bucket_of_that_name_not_tagged_ours_stops_provision(cfg, clients):
    s3, sts = clients
    bucket = MediaBucket.open(cfg, s3, sts, GATE)
    s3.create_bucket(Bucket=bucket.name)
    with pytest.raises(ProvisionError, match="is not tagged whipup:cluster=whipup-demo: rename the cluster"):
        bucket.check()
    s3.put_bucket_tagging(Bucket=bucket.name, Tagging={"TagSet": [{"Key": "whipup:cluster", "Value": "other"}]})
    with pytest.raises(ProvisionError):
        bucket.ensure(cfg, "vpc-1")
    assert bucket.plan() is None                            # destroy leaves it alone too
    assert not record_path(cfg).exists()


def test_outside_us_east_1_the_region_is_the_location_constraint(cfg, aws):
    eu = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, region="eu-west-1"))
    s3 = boto3.client("s3", region_name="eu-west-1")
    bucket = MediaBucket.open(eu, s3, boto3.client("sts", region_name="eu-west-1"), None)
    bucket.ensure(eu, "vpc-1", lambda _m: None)
    assert s3.get_bucket_location(Bucket=bucket.name)["LocationConstraint"] == "eu-west-1"
    assert create_bucket_params("b", "us-east-1") == {"Bucket": "b"}


def test_the_read_policy_lets_the_clusters_vpc_get_objects_only():
    assert read_policy("b", "vpc-9") == {"Version": "2012-10-17", "Statement": [{
        "Sid": "WhipupProxyReadsMedia", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*", "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-9"}}}]}


def test_destroy_removes_every_object_and_the_bucket(cfg, clients, log):
    s3, sts = clients
    bucket = MediaBucket.open(cfg, s3, sts, GATE)
    bucket.ensure(cfg, "vpc-1", log.append)
    for i in range(3):
        s3.put_object(Bucket=bucket.name, Key=f"uploads/{i}.txt", Body=b"x")
    plan = bucket.plan()
    assert describe(plan) == [f"  media bucket  {bucket.name}  (3 object(s), uploaded media: deleted with it)"]
    assert bucket.destroy(cfg, plan, log.append) == 3
    assert s3.list_buckets()["Buckets"] == [] and not record_path(cfg).exists()
    assert log[-1] == f"deleted media bucket {bucket.name} and its 3 object(s): the cluster's uploads are gone"
    assert bucket.plan() is None and describe(None) == []


def own_image(roles_file):
    """moto holds no Debian cloud team image for `ami: auto` on aws: the fixture's own image, by name."""
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", '  ami: {name: "debian-12-amd64-*", owner: self} '))


def test_destroy_task_shows_and_removes_the_bucket_even_with_no_node_left(ec2, roles_file, capsys):
    own_image(roles_file)
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    s3 = boto3.client("s3", region_name="us-east-1")
    name = f"whipup-demo-media-{ACCOUNT_ID}-us-east-1"
    s3.put_object(Bucket=name, Key="a.txt", Body=b"a")
    capsys.readouterr()
    tasks.destroy(Context(), config=str(roles_file), target="aws", yes=True)
    out = capsys.readouterr().out
    assert f"  media bucket  {name}  (1 object(s), uploaded media: deleted with it)" in out
    assert f"deleted media bucket {name} and its 1 object(s)" in out
    assert s3.list_buckets()["Buckets"] == []
    tasks.destroy(Context(), config=str(roles_file), target="aws", yes=True)
    assert "nothing tagged whipup-demo to remove" in capsys.readouterr().out


def test_media_local_makes_no_bucket(ec2, roles_file, capsys):
    text = roles_file.read_text().replace("  keep_releases: 5\n", "  keep_releases: 5\n  media: local\n", 1)
    roles_file.write_text(text)
    own_image(roles_file)
    assert load_config(roles_file).app.media == "local"
    tasks.provision(Context(), config=str(roles_file), target="aws", wait_ssh=False)
    assert boto3.client("s3", region_name="us-east-1").list_buckets()["Buckets"] == []
    assert "media:" not in capsys.readouterr().out
