"""`ami: auto`: the Debian image picked by the project's Python (fabfile/provision/images.py), the config key,
and what provision and preflight do with it."""
from __future__ import annotations

import pytest

from fabfile.config import AUTO_AMI, AmiSpec, ConfigError, load_config
from fabfile.debian import RELEASES, release
from fabfile.errors import ProvisionError
from fabfile.provision import images
from fabfile.provision.converge import provision
from fabfile.provision.images import KnownImage, choose_image, known_images, resolve

SANDBOX = known_images("sandbox")
AWS = known_images("aws")
D12 = AmiSpec(name="debian-12-amd64-whipup-sandbox", owner="self")
D13 = AmiSpec(name="debian-13-amd64-whipup-sandbox", owner="self")


def test_known_images_per_target():
    assert [(i.release.key, i.release.python, i.spec) for i in SANDBOX] == [
        ("debian-12", "3.11.2", D12), ("debian-13", "3.13.5", D13)]
    assert [i.spec for i in AWS] == [AmiSpec(name="debian-12-amd64-*", owner="136693071363"),
                                     AmiSpec(name="debian-13-amd64-*", owner="136693071363")]
    assert [(r.codename, r.postgresql) for r in RELEASES] == [("bookworm", "15"), ("trixie", "17")]


@pytest.mark.parametrize("python, chosen", [
    (None, "debian-12"), ("", "debian-12"), (">=3.10", "debian-12"), (">=3.11", "debian-12"),
    (">=3.12", "debian-13"), ("~=3.13", "debian-13"), (">=3.11,<3.12", "debian-12"), ("<3.12", "debian-12"),
    ("==3.13.*", "debian-13"), ("3.13", "debian-13"), ("3.13.1", "debian-13"), ("3.11", "debian-12"),
    (">=3.11.4", "debian-13"),           # Debian 12's 3.11.2 is too old for it; 3.13.5 is not
    (" >=3.12 ", "debian-13"),
])
def test_the_first_image_whose_python_fits(python, chosen):
    assert choose_image(python, SANDBOX).release.key == chosen
    assert choose_image(python, AWS).spec.name == f"{chosen}-amd64-*"


def test_the_reason_names_the_python_and_the_constraint():
    assert choose_image(None, SANDBOX).reason == "no Python constraint: the default"
    c = choose_image(">=3.12", SANDBOX)
    assert c.reason == "its Python 3.13.5 satisfies the project's '>=3.12'"
    assert c.describe() == ("image: debian-13-amd64-whipup-sandbox (owner self): Debian 13 (trixie), Python 3.13.5, "
                            "PostgreSQL 17; its Python 3.13.5 satisfies the project's '>=3.12'")


@pytest.mark.parametrize("python", [">=3.14", "3.12", "<3.11", "==3.10.*"])
def test_no_fitting_image_is_an_error_naming_the_constraint_and_the_pythons(python):
    with pytest.raises(ValueError) as info:
        choose_image(python, SANDBOX)
    assert str(info.value) == (f"no image has a Python that satisfies the project's {python!r} "
                               f"(Debian 12 (bookworm) has Python 3.11.2, Debian 13 (trixie) has Python 3.13.5)")


def test_a_constraint_that_is_not_one_is_named():
    with pytest.raises(ValueError, match=r"Python constraint 'python3; whoami' is not a version specifier"):
        choose_image("python3; whoami", SANDBOX)


def test_the_order_of_the_known_images_is_the_preference():
    flipped = tuple(reversed(SANDBOX))
    assert choose_image(">=3.10", flipped).release.key == "debian-13"
    assert choose_image(None, (KnownImage(release("debian-13"), D13),)).spec == D13


# --- roles.yaml ---------------------------------------------------------------------------

def test_auto_is_the_shipped_default_and_a_value_of_every_ami_key(roles_file):
    cfg = load_config(roles_file)
    assert cfg.cluster.ami == AUTO_AMI and all(r.ami == AUTO_AMI for r in cfg.roles)
    text = roles_file.read_text().replace("  ami: auto ", '  ami: {name: "x-*", owner: self} ')
    roles_file.write_text(text.replace("    count: 1\n    instance_type: t3.small\n    root_volume_gb: 20",
                                       "    count: 1\n    ami: auto\n    instance_type: t3.small\n"
                                       "    root_volume_gb: 20", 1))
    cfg = load_config(roles_file)
    assert cfg.cluster.ami == AmiSpec(name="x-*", owner="self")
    assert cfg.role("db").ami == AUTO_AMI and cfg.role("app").ami == AmiSpec(name="x-*", owner="self")


@pytest.mark.parametrize("value, message", [
    ("automatic", "roles.yaml: cluster.ami: expected auto, {id: ami-...} or {name: ..., owner: ...}, got 'automatic'"),
    ("Auto", "roles.yaml: cluster.ami: expected auto, {id: ami-...} or {name: ..., owner: ...}, got 'Auto'"),
])
def test_a_word_other_than_auto_is_refused(roles_file, value, message):
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", f"  ami: {value} "))
    with pytest.raises(ConfigError) as info:
        load_config(roles_file)
    assert str(info.value) == message


def test_resolve_fills_auto_and_leaves_explicit_specs(roles_file):
    roles_file.write_text(roles_file.read_text().replace(
        "    count: 1\n    instance_type: t3.small\n    root_volume_gb: 20",
        "    count: 1\n    ami: {id: ami-0123456789abcdef0}\n    instance_type: t3.small\n    root_volume_gb: 20", 1))
    cfg, choice = resolve(load_config(roles_file), ">=3.12")
    assert choice.spec == D13
    assert cfg.cluster.ami == AmiSpec(name=D13.name, owner="self", auto=True) and not cfg.cluster.ami.unresolved
    assert cfg.role("db").ami == AmiSpec(id="ami-0123456789abcdef0")
    assert {r.name: r.ami.name for r in cfg.roles if r.name != "db"} == dict.fromkeys(
        ("proxy", "app", "worker", "monitor"), D13.name)


def test_resolve_without_auto_changes_nothing(roles_file):
    roles_file.write_text(roles_file.read_text().replace("  ami: auto ", '  ami: {name: "x-*", owner: self} '))
    cfg = load_config(roles_file)
    assert resolve(cfg, ">=3.14") == (cfg, None)      # an explicit image wins: no choice, no error


def test_on_aws_auto_picks_the_official_images(roles_file):
    roles_file.write_text(roles_file.read_text().replace("  target: sandbox ", "  target: aws "))
    cfg, choice = resolve(load_config(roles_file), None)
    assert cfg.cluster.ami == AmiSpec(name="debian-12-amd64-*", owner="136693071363", auto=True)
    assert choice.reason == "no Python constraint: the default"


# --- provision and preflight --------------------------------------------------------------

def test_provision_launches_the_chosen_image_and_preflight_says_why(ec2, cfg, fast, log):
    d13 = ec2.register_image(Name=D13.name, Description="trixie")["ImageId"]
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=log.append, python=">=3.12")
    launched = {i["ImageId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert launched == {d13}
    assert ("image: debian-13-amd64-whipup-sandbox (owner self): Debian 13 (trixie), Python 3.13.5, PostgreSQL 17; "
            "its Python 3.13.5 satisfies the project's '>=3.12'") in log


def test_provision_without_a_constraint_launches_debian_12(ec2, cfg, fast, log):
    ec2.register_image(Name=D13.name, Description="trixie")
    d12 = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [D12.name]}])["Images"][0]
    provision(ec2, cfg, wait_ssh=False, timing=fast, log=log.append)
    launched = {i["ImageId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert launched == {d12["ImageId"]}
    assert any(line.endswith("no Python constraint: the default") for line in log)


def test_no_fitting_python_stops_provision_before_any_call(ec2, cfg, fast):
    from fabfile.provision.accounting import MutationCounter

    counter = MutationCounter.of(ec2)
    with pytest.raises(ProvisionError) as info:
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None, python=">=3.14")
    assert str(info.value) == (
        "roles.yaml: cluster.ami: auto: no image has a Python that satisfies the project's '>=3.14' "
        "(Debian 12 (bookworm) has Python 3.11.2, Debian 13 (trixie) has Python 3.13.5); give cluster.ami an "
        "image of your own whose Python fits ({name: ..., owner: ...} or {id: ami-...})")
    assert counter.total == 0


def test_a_chosen_image_the_sandbox_lacks_is_a_preflight_problem(ec2, cfg, fast):
    with pytest.raises(ProvisionError) as info:        # the fixture registers only Debian 12's
        provision(ec2, cfg, wait_ssh=False, timing=fast, log=lambda _m: None, python="3.13")
    assert str(info.value) == (
        "preflight: 1 problem, nothing was created:\n  roles.yaml: cluster.ami: auto chose an image that is not "
        "there: no available image named 'debian-13-amd64-whipup-sandbox' owned by self in us-east-1 "
        "(fab sandbox.up builds and registers it)")


def test_an_unresolved_auto_never_reaches_the_api():
    from fabfile.provision.builders import describe_images_params

    with pytest.raises(ProvisionError, match="ami: auto was not resolved"):
        describe_images_params(AUTO_AMI)
    assert images.specifier("3.12.4").contains("3.12.0")
