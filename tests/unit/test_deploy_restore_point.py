"""The restore point before migrate (fabfile/backup/run.py restore_point) over the scripted hosts of
deploy_fakes: taken on the settings check's word, with no second Django process to ask."""
from __future__ import annotations

from types import SimpleNamespace

from deploy_scenarios import APP, NEW, R2, deploy, gitcfg, site, world

from fabfile.backup import run as backup_run

__all__ = ["gitcfg", "site", "world"]          # fixtures


def test_migrate_runs_when_the_database_lacks_one_after_a_restore_point(site, world, monkeypatch):
    """The settings check found the migration: the restore point is taken on its word (no `migrate --check`,
    a second Django process), then migrate runs."""
    from fabfile.backup import run as backup_run

    cl, hosts, out = site
    hosts["app"].pending_migrations = [["notes", "0002_more"]]
    taken = []
    monkeypatch.setattr(backup_run.BackupStore, "open", classmethod(lambda cls, cfg: "store"))
    monkeypatch.setattr(backup_run, "take", lambda cl, store, kind, release, sha, out: taken.append(
        (kind, release, world.stages(APP).count("migrate"))) or SimpleNamespace(id="b1"))
    assert deploy(cl) == NEW
    assert "migrate" in world.stages(APP) and "collectstatic" in world.stages(APP)
    assert taken == [("restore-point", R2, 0)]                      # before migrate
    assert "migrate check" not in world.stages(APP)


def test_no_restore_point_and_no_migrate_when_the_settings_check_found_nothing_to_apply(site, world, monkeypatch):
    cl, hosts, out = site
    hosts["app"].pending_migrations = []
    monkeypatch.setattr(backup_run, "take", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a backup")))
    assert deploy(cl) == NEW
    assert "migrate" not in world.stages(APP) and "migrate check" not in world.stages(APP)
