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
