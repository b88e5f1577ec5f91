"""roles.yaml app.keep_warm: how long (and with how many workers) the previous release's gunicorn slot stays
up after a switch; its forms and its errors, each naming the key."""
from __future__ import annotations

import pytest
from test_config import error_of, minimal, write

from fabfile.appconfig import KeepWarm, duration
from fabfile.config import load_config
from fabfile.validate import Invalid


def keep_warm(tmp_path, value):
    data = minimal()
    data["app"]["keep_warm"] = value
    return load_config(write(tmp_path, data)).app.keep_warm


def test_the_default_keeps_one_worker_for_half_an_hour(tmp_path):
    assert load_config(write(tmp_path, minimal())).app.keep_warm == KeepWarm(1800, 1)
    assert keep_warm(tmp_path, None) == keep_warm(tmp_path, True) == KeepWarm(1800, 1)


@pytest.mark.parametrize("value, expected", [
    (False, KeepWarm(0, 0)),                  # the previous slot stops at once
    ("30m", KeepWarm(1800, 1)), ("90s", KeepWarm(90, 1)), ("2h", KeepWarm(7200, 1)), (45, KeepWarm(45, 1)),
    ("168h", KeepWarm(7 * 24 * 3600, 1)),
    ({"for": "10m", "workers": 2}, KeepWarm(600, 2)), ({"workers": 3}, KeepWarm(1800, 3)),
    ({"for": "5m"}, KeepWarm(300, 1)), ({"for": 0, "workers": 4}, KeepWarm(0, 0)),
])
def test_the_forms_of_keep_warm(tmp_path, value, expected):
    assert keep_warm(tmp_path, value) == expected


def test_a_duration_of_zero_stops_the_previous_slot_at_once(tmp_path):
    assert keep_warm(tmp_path, "0").seconds == keep_warm(tmp_path, 0).seconds == 0


DURATION = "expected a duration like 90s, 30m or 2h"


@pytest.mark.parametrize("value, message", [
    ("30 min", f"roles.yaml: app.keep_warm: {DURATION}, got '30 min'"),
    ("30m\n", f"roles.yaml: app.keep_warm: {DURATION}, got '30m\\n'"),
    ("1d", f"roles.yaml: app.keep_warm: {DURATION}, got '1d'"),
    (-5, f"roles.yaml: app.keep_warm: {DURATION}, got -5"),
    (1.5, f"roles.yaml: app.keep_warm: {DURATION}, got 1.5"),
    ([30], f"roles.yaml: app.keep_warm: {DURATION}, got [30]"),
    ("169h", "roles.yaml: app.keep_warm: at most 168 h, got '169h'"),
    ({"for": "soon"}, f"roles.yaml: app.keep_warm.for: {DURATION}, got 'soon'"),
    ({"for": True}, f"roles.yaml: app.keep_warm.for: {DURATION}, got True"),
    ({"for": "30m", "workers": 0}, "roles.yaml: app.keep_warm.workers: expected an integer 1-64, got 0"),
    ({"workers": "2"}, "roles.yaml: app.keep_warm.workers: expected an integer 1-64, got '2'"),
    ({"workers": 65}, "roles.yaml: app.keep_warm.workers: expected an integer 1-64, got 65"),
    ({"fro": "30m"}, "roles.yaml: app.keep_warm.fro: unknown key (did you mean 'for'?)"),
    ({"minutes": 30}, "roles.yaml: app.keep_warm.minutes: unknown key (expected one of: for, workers)"),
])
def test_a_bad_keep_warm_names_its_key(tmp_path, value, message):
    data = minimal()
    data["app"]["keep_warm"] = value
    assert error_of(tmp_path, data) == message


def test_an_unknown_app_key_near_keep_warm_is_named(tmp_path):
    data = minimal()
    data["app"]["keep_wram"] = "30m"
    assert "app.keep_wram: unknown key (did you mean 'keep_warm'?)" in error_of(tmp_path, data)


def test_duration_by_itself():
    assert [duration(v, "x") for v in ("0", "59s", "1m", "3h", 600)] == [0, 59, 60, 10800, 600]
    assert duration("2h", "x", hi=7200) == 7200
    with pytest.raises(Invalid, match=r"^x: at most 1 h, got '61m'$"):
        duration("61m", "x", hi=3600)
    with pytest.raises(Invalid, match=r"^x\.for: expected a duration"):
        duration(None, "x.for")
