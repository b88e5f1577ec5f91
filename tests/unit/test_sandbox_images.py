"""The local cloud's two images (Debian 12 and 13): commands, names, which tree a host boots over, the build lock."""
from __future__ import annotations

import fcntl
import json
import threading
import time
from pathlib import Path

import pytest

from fabfile.debian import RELEASES, release, sandbox_image_name
from fabfile.sandbox import control, hosts, image, materializer
from fabfile.sandbox.errors import SandboxError
from fabfile.sandbox.settings import IMAGE_NAME, load_settings

S = load_settings({"WHIPUP_SANDBOX_STATE": "/st", "WHIPUP_CACHE": "/cache", "WHIPUP_SANDBOX_BRIDGE": "whipbr0"})
D13 = release("debian-13")


def test_debootstrap_and_apt_sources_of_trixie():
    assert image.debootstrap_cmd(Path("/c/x"), "http://deb.debian.org/debian", "trixie") == [
        "debootstrap", "--variant=minbase",
        "--include=openssh-server,python3,sudo,ca-certificates,tini,iproute2,procps",
        "trixie", "/c/x", "http://deb.debian.org/debian"]
    assert image.sources_list("http://m/debian", "trixie") == (
        "deb http://m/debian trixie main\n"
        "deb http://m/debian trixie-updates main\n"
        "deb http://m/debian-security trixie-security main\n")
    assert image.debootstrap_cmd(Path("/c/x"), "http://m/debian")[-3] == "bookworm"   # the default: Debian 12


def test_names_and_trees_of_the_images():
    assert [sandbox_image_name(r) for r in RELEASES] == ["debian-12-amd64-whipup-sandbox",
                                                         "debian-13-amd64-whipup-sandbox"]
    assert IMAGE_NAME == sandbox_image_name(RELEASES[0])
    assert S.image_path("debian-13") == Path("/cache/images/debian-13") and S.image_dir == Path("/cache/images/debian-12")
    with pytest.raises(KeyError, match="unknown Debian image 'debian-11' \\(known: debian-12, debian-13\\)"):
        release("debian-11")


def test_register_image_params():
    assert control.register_image_params(D13) == {
        "Name": "debian-13-amd64-whipup-sandbox",
        "Description": "Debian 13 (trixie) minbase, whipup local cloud (Python 3.13.5, PostgreSQL 17)",
        "Architecture": "x86_64", "RootDeviceName": "/dev/xvda", "VirtualizationType": "hvm",
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}]}


def test_pam_loginuid_is_made_optional_whatever_the_spacing():
    assert image.loginuid_optional("# x\nsession    required     pam_loginuid.so\nsession required pam_env.so\n") == (
        "# x\nsession    optional     pam_loginuid.so\nsession required pam_env.so\n")
    assert image.loginuid_optional("session\trequired\tpam_loginuid.so\n") == "session\toptional\tpam_loginuid.so\n"
    assert image.loginuid_optional("session optional pam_loginuid.so\n") == "session optional pam_loginuid.so\n"


def test_a_host_boots_over_the_tree_of_its_image():
    argv = hosts.boot_argv(S, hosts.HostSpec("i-1", "10.0.0.5", "ip-10-0-0-5", image="debian-13"))
    assert argv[-3:] == ["/st/hosts/i-1", "/cache/images/debian-13", "ip-10-0-0-5"]
    assert hosts.boot_argv(S, hosts.HostSpec("i-1", "10.0.0.5", "h"))[-2] == "/cache/images/debian-12"


def test_the_materializer_maps_ami_names_to_trees():
    assert materializer.image_key("debian-13-amd64-whipup-sandbox") == "debian-13"
    assert materializer.image_key("debian-12-amd64-whipup-sandbox") == "debian-12"
    assert materializer.image_key("debian-13-amd64-20250814-2204") is None and materializer.image_key(None) is None


class FakeEc2:
    def __init__(self, names):
        self.names, self.calls = names, 0

    def describe_images(self, ImageIds):
        self.calls += 1
        return {"Images": [{"ImageId": i, "Name": self.names[i]} for i in ImageIds if i in self.names]}


def test_the_materializer_asks_once_per_image_and_refuses_a_foreign_one():
    ec2 = FakeEc2({"ami-1": "debian-13-amd64-whipup-sandbox", "ami-2": "ubuntu-noble"})
    m = materializer.Materializer(S, ec2)
    inst = {"InstanceId": "i-1", "ImageId": "ami-1", "PrivateIpAddress": "10.0.0.5", "PrivateDnsName": "h"}
    assert m.spec(inst) == hosts.HostSpec("i-1", "10.0.0.5", "h", image="debian-13")
    assert m.spec({**inst, "InstanceId": "i-2"}).image == "debian-13" and ec2.calls == 1
    with pytest.raises(SandboxError, match=r"i-3: launched from ami-2 \(ubuntu-noble\), not a local cloud image "
                                           r"\(debian-12-amd64-whipup-sandbox, debian-13-amd64-whipup-sandbox\)"):
        m.spec({**inst, "InstanceId": "i-3", "ImageId": "ami-2"})
    m.pool.shutdown()


def test_a_disk_never_changes_its_image(tmp_path):
    s = load_settings({"WHIPUP_SANDBOX_STATE": str(tmp_path), "WHIPUP_CACHE": str(tmp_path / "cache")})
    (tmp_path / "hosts" / "i-1").mkdir(parents=True)
    hosts.write_state(s, "i-1", {"instance_id": "i-1", "private_ip": "10.0.0.5", "image": "debian-12"})
    with pytest.raises(SandboxError, match="i-1: its disk lies over image debian-12, not debian-13"):
        hosts.start(s, hosts.HostSpec("i-1", "10.0.0.5", "h", image="debian-13"), None)


def test_a_cached_image_is_not_rebuilt_and_a_second_builder_waits_for_the_first(tmp_path):
    s = load_settings({"WHIPUP_CACHE": str(tmp_path)})
    tree = s.image_path("debian-13")
    lock = tmp_path / "images" / "debian-13.lock"
    lock.parent.mkdir(parents=True)
    said: list[str] = []
    got: list[dict] = []
    with open(lock, "w") as held:                 # "another sandbox" holds the lock while it builds
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: got.append(image.build_image(s, D13, said.append)))
        waiter.start()
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
        assert said == ["image debian-13: another sandbox is building it; waiting"] and not got
        tree.mkdir()
        info = {"format": image.IMAGE_FORMAT, "suite": "trixie", "size_bytes": 1}
        (tree / "whipup-image.json").write_text(json.dumps(info))
    waiter.join(10)
    assert got == [info] and said == ["image debian-13: another sandbox is building it; waiting"]
    assert image.image_ready(s, D13) and not image.image_ready(s, RELEASES[0])
    (tree / "whipup-image.json").write_text(json.dumps({**info, "suite": "bookworm"}))
    assert not image.image_ready(s, D13)          # a tree of another suite under its name is not it
