"""The deploy lock's record and message, and the audit log's lines: pure."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from fabfile.deploy.lock import (AuditRecord, LockInfo, describe_audit, describe_holder, format_audit,
                                 format_lock, held_message, parse_audit, parse_lock)

NOW = datetime(2024, 1, 31, 12, 3, 0, tzinfo=timezone.utc)


def test_lock_round_trip_and_token():
    info = LockInfo.new("20240131120000-1a2b3c4", "deploy", now=datetime(2024, 1, 31, 12, 0, 0, tzinfo=timezone.utc),
                        who="ana@laptop")
    assert len(info.token) == 16 and info.token != LockInfo.new("x", "deploy").token
    text = format_lock(info)
    assert text.endswith("\n") and json.loads(text)["who"] == "ana@laptop"
    assert parse_lock(text) == info


def test_holder_is_named_with_time_and_release():
    info = LockInfo("ana@laptop", "2024-01-31T12:00:00Z", "20240131120000-1a2b3c4", "quick-update", "ab" * 8)
    assert describe_holder(info, NOW) == ("ana@laptop since 2024-01-31T12:00:00Z (3 min ago), quick-update of "
                                          "release 20240131120000-1a2b3c4")
    msg = held_message(info, "demo-app-0:/srv/demo/shared/deploy.lock", NOW)
    assert msg.startswith("deploy lock on demo-app-0:/srv/demo/shared/deploy.lock is held by ana@laptop since")
    assert msg.endswith("take the lock over with --break-lock")
    old = LockInfo("bo@ci", "2024-01-31T09:00:00Z", "", "rollback")
    assert describe_holder(old, NOW) == "bo@ci since 2024-01-31T09:00:00Z (3 h ago), rollback"


def test_a_lock_without_readable_info_is_still_held():
    assert parse_lock("").who == "unknown"
    assert describe_holder(parse_lock(""), NOW).startswith("unknown (lock being written, or written by hand")
    assert parse_lock("garbage {").who == "unknown ('garbage {')"
    assert parse_lock('{"who": "x@y"}').since == ""


def test_audit_lines():
    rec = AuditRecord(at="2024-01-31T12:00:00Z", who="ana@laptop", action="deploy", result="rolled-back",
                      from_release="20240130120000-aaaaaaa", to_release="20240131120000-bbbbbbb",
                      from_sha="a" * 40, to_sha="b" * 40, component="web", seconds=12.34,
                      detail="health check failed\nsecond line")
    line = format_audit(rec)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert parse_audit(line + "not json\n" + line) == [rec, rec]
    assert describe_audit(rec) == ("2024-01-31T12:00:00Z ana@laptop deploy rolled-back: 20240130120000-aaaaaaa -> "
                                   "20240131120000-bbbbbbb (web, 12.3 s): health check failed")


# --- a stale lock: proven only for a holder on this machine whose process is gone -------------------

from fabfile.deploy.lock import boot_id, interrupted_record, process_start, stale_evidence  # noqa: E402

BOOT = "1e0b2c3d-0000-4000-8000-000000000001"


def _held(**kw) -> LockInfo:
    base = dict(who="ana@laptop", since="2024-01-31T12:00:00Z", release="20240131120000-1a2b3c4",
                action="deploy", token="ab" * 8, host="laptop", pid=4242, started=f"{BOOT}:1000")
    return LockInfo(**{**base, **kw})


def test_a_lock_records_its_holders_machine_process_and_start():
    import os
    import socket
    info = LockInfo.new("20240131120000-1a2b3c4", "deploy")
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert info.started == process_start(os.getpid()) and info.started.startswith(boot_id() + ":")
    assert parse_lock(format_lock(info)) == info
    assert stale_evidence(info, socket.gethostname(), boot_id()) is None          # we are alive


def test_stale_only_when_proven_on_this_machine():
    gone = lambda pid: None                                                     # noqa: E731
    reused = lambda pid: f"{BOOT}:2000"                                         # noqa: E731
    alive = lambda pid: f"{BOOT}:1000"                                          # noqa: E731
    assert stale_evidence(_held(), "laptop", BOOT, gone) == "its process 4242 on laptop is gone"
    assert stale_evidence(_held(), "laptop", BOOT, reused) == (
        "its process 4242 on laptop is gone (that number is another process's now)")
    assert stale_evidence(_held(), "laptop", BOOT, alive) is None
    assert stale_evidence(_held(), "ci-runner", BOOT, gone) is None              # another machine: unproven
    assert stale_evidence(_held(), "laptop", "another-boot", gone) is None       # same name, other machine/boot
    assert stale_evidence(_held(pid=0), "laptop", BOOT, gone) is None            # an older lock: no pid
    assert stale_evidence(parse_lock('{"who": "x@y"}'), "laptop", BOOT, gone) is None


def test_a_taken_over_lock_gets_an_interrupted_audit_line():
    rec = interrupted_record(_held(), "its process 4242 on laptop is gone", "bo@laptop", NOW)
    assert describe_audit(rec) == ("2024-01-31T12:03:00Z ana@laptop deploy interrupted: (none) -> "
                                   "20240131120000-1a2b3c4 (all): its process 4242 on laptop is gone; its lock "
                                   "(since 2024-01-31T12:00:00Z) taken over by bo@laptop")
