"""fabfile.validate's readers and patterns: every string is matched whole."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabfile import appconfig, config, dataconfig, validate, vault
from fabfile.configure import scram
from fabfile.deploy import releases

FABFILE = Path(__file__).resolve().parents[2] / "fabfile"

# one value each pattern accepts
SAMPLES = {
    (validate, "BRANCH"): "main", (validate, "GIT_URL"): "https://example.com/x.git",
    (validate, "DOTTED"): "demo.settings", (validate, "PACKAGE"): "nginx", (validate, "SERVICE"): "nginx",
    (validate, "USER"): "admin", (validate, "OWNER"): "postgres:postgres", (validate, "MODE"): "0644",
    (validate, "REGION"): "us-east-1", (validate, "VPC_ID"): "vpc-0abc1234", (validate, "SUBNET_ID"): "subnet-0abc1234",
    (validate, "AMI_ID"): "ami-0abc1234", (validate, "AMI_OWNER"): "123456789012",
    (validate, "INSTANCE_TYPE"): "t3.small", (config, "_CLUSTER_NAME"): "whipup-demo", (appconfig, "APP_NAME"): "demo",
    (appconfig, "ENV_NAME"): "FOO_BAR", (appconfig, "WSGI"): "mysite.wsgi:application",
    (appconfig, "URL_PATH"): "/-/health", (appconfig, "SSM_NAME"): "/whipup/demo/KEY",
    (appconfig, "PYTHON_SPEC"): ">=3.12,<3.14", (appconfig, "DURATION"): "30m",
    (config, "_ROLE_NAME"): "app", (dataconfig, "VOLUME_DEVICE"): "/dev/xvdf", (dataconfig, "NIGHTLY"): "03:00", (vault, "NAME"): "db_password",
    (releases, "SHA"): "a" * 40,
    (releases, "RELEASE_ID"): "20261126143113-b7c1d3a",
    (scram, "_VERIFIER"): "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy", (validate, "_PLAIN_KEY"): "cluster",
}
SEARCHED = ("_REQ_NAME", "_ENV_VAR")   # patterns that find a part of a string, on purpose


def test_every_validating_pattern_is_listed():
    found: dict[tuple, tuple] = {}
    for module in (validate, config, dataconfig, appconfig, vault, releases, scram):
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and name not in SEARCHED:
                found.setdefault((id(value), name), (module, name))   # an imported pattern is its module's
    assert set(found.values()) == set(SAMPLES)


@pytest.mark.parametrize("key", SAMPLES, ids=[f"{m.__name__}.{n}" for m, n in SAMPLES])
@pytest.mark.parametrize("suffix", ["\n", " ", "\r\n", "\x00", "\n; rm -rf /"])
def test_a_pattern_matches_the_whole_string_only(key, suffix):
    module, name = key
    pattern = getattr(module, name)
    value = SAMPLES[key]
    assert pattern.fullmatch(value)
    for candidate in (value + suffix, suffix.strip() + value if suffix.strip() else "\n" + value):
        assert not pattern.fullmatch(candidate)
        assert not pattern.match(candidate)     # anchored \A...\Z: even a stray .match() cannot pass a prefix
        assert not pattern.search(candidate)


def test_no_pattern_in_fabfile_is_anchored_with_dollar():
    """`$` matches before a final newline: validating patterns end in \\Z and are used with fullmatch."""
    offenders = []
    for path in FABFILE.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"""re\.(compile|match|search|fullmatch)\(r?["'][^"']*\$["']""", line):
                offenders.append(f"{path.relative_to(FABFILE)}:{n}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("digits", ["١٢٣٤٥٦٧٨٩٠١٢", "１２３４５６７８９０１２"])
def test_digits_are_ascii_digits(digits):
    assert validate.AMI_OWNER.fullmatch("123456789012")
    assert not validate.AMI_OWNER.fullmatch(digits)
    assert not validate.REGION.fullmatch("us-east-" + digits[0])
