"""fabfile.flags: task flags that take numbers, parsed and range-checked, errors naming the flag."""
from __future__ import annotations

import pytest

from fabfile.config import ConfigError
from fabfile.flags import FlagError, count, flag_name, seconds


@pytest.mark.parametrize("value, expected", [
    ("30", 30.0), ("2.5", 2.5), (" 7 ", 7.0), ("1.", 1.0), (".5", 0.5), (30, 30.0), (2.5, 2.5), ("3600", 3600.0),
])
def test_seconds_accepts_plain_decimals_in_range(value, expected):
    assert seconds("--health-timeout", value, 0.5, 3600) == expected


@pytest.mark.parametrize("value, shown", [
    ("abc", "'abc'"), ("", "''"), ("-5", "'-5'"), ("+5", "'+5'"), ("1e3", "'1e3'"), ("nan", "'nan'"),
    ("inf", "'inf'"), ("1_000", "'1_000'"), ("٣٠", "'٣٠'"), ("30s", "'30s'"), ("0", "'0'"), ("3601", "'3601'"),
    (0, "0"), (float("nan"), "nan"), (float("inf"), "inf"), (True, "True"), ("1" * 400, "'" + "1" * 35 + "...'"),
])
def test_seconds_refuses_naming_the_flag(value, shown):
    with pytest.raises(FlagError) as info:
        seconds("--health-timeout", value, 1, 3600)
    assert str(info.value) == f"--health-timeout: expected seconds between 1 and 3600, got {shown}"


def test_the_issue_example():
    with pytest.raises(FlagError, match=r"^--health-timeout: expected seconds between 1 and 3600, got 'abc'$"):
        seconds("health_timeout", "abc", 1, 3600)


@pytest.mark.parametrize("value, expected", [("5", 5), (5, 5), ("0", 0), (" 12\n", 12), ("100", 100)])
def test_count_accepts_whole_numbers_in_range(value, expected):
    assert count("--history", value, 0, 100) == expected


@pytest.mark.parametrize("value, shown", [
    ("5.0", "'5.0'"), ("5.5", "'5.5'"), (5.0, "5.0"), ("-1", "'-1'"), ("101", "'101'"), ("x", "'x'"), ("", "''"),
    ("١٢", "'١٢'"), (False, "False"), ("9" * 30, "'" + "9" * 30 + "'"), (10 ** 5000, "a number too large"),
    (None, "None"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 20 else type(v).__name__)
def test_count_refuses_naming_the_flag(value, shown):
    with pytest.raises(FlagError) as info:
        count("history", value, 0, 100)
    assert str(info.value) == f"--history: expected a count between 0 and 100, got {shown}"


def test_flag_error_is_a_config_error_so_the_task_boundary_exits_with_it():
    from invoke import Exit

    from fabfile.boundary import exits

    assert issubclass(FlagError, ConfigError)
    with pytest.raises(Exit) as info:
        with exits():
            count("--history", "lots", 1, 50)
    assert info.value.code == 1 and info.value.message == "--history: expected a count between 1 and 50, got 'lots'"


def test_flag_name():
    assert flag_name("health_timeout") == "--health-timeout"
    assert flag_name("--to") == "--to" and flag_name("-y") == "-y"


def test_botocore_errors_are_told_without_importing_botocore_for_it():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from fabfile.boundary import cloud_message

    assert "cannot reach the cloud" in cloud_message(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    error = ClientError({"Error": {"Code": "Nope", "Message": "no"}}, "DescribeInstances")
    assert cloud_message(error).startswith("ClientError: ") and cloud_message(ValueError("x")) is None
