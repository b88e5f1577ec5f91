"""Release names, pruning, requirements, node state and reload decisions: pure."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fabfile.deploy.errors import DeployError
from fabfile.deploy.releases import (ReleaseInfo, check_release_id, same_code, django_requirement, in_use,
                                     migration_files_missing, parse_state, previous_release,
                                     release_id, release_of_interpreter, releases_to_delete, requirements_change,
                                     requirements_hash, upgrade_spec, venv_plan)
from fabfile.layout import Layout, env_file_text, env_text, parse_env_text

SHA = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
L = Layout("demo", "demo.settings", "requirements.txt")


IDS = [f"2024010{d}120000-{c * 7}" for d, c in zip(range(1, 9), "abcdef01")]


def test_release_id_is_utc_time_and_short_sha():
    moment = datetime(2024, 1, 31, 13, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert release_id(moment, SHA) == "20240131120405-1a2b3c4"
    with pytest.raises(DeployError, match="not a full git sha"):
        release_id(moment, "1a2b3c4")


def test_check_release_id_names_the_format():
    assert check_release_id("20240131120405-1a2b3c4") == "20240131120405-1a2b3c4"
    with pytest.raises(DeployError, match=r"'nope' is not a release id \(expected <YYYYmmddHHMMSS>-<sha>"):
        check_release_id("nope")
    with pytest.raises(DeployError):
        check_release_id("../../etc")


def test_previous_release():
    assert previous_release(IDS, IDS[4]) == IDS[3]
    assert previous_release(IDS, IDS[0]) is None
    assert previous_release(IDS, None) is None
    assert previous_release(IDS + ["current.tmp-x", "junk"], IDS[-1]) == IDS[-2]


def test_prune_keeps_the_newest_and_never_current_or_previous():
    assert releases_to_delete(IDS, IDS[-1], 5) == IDS[:3]
    # rolled back far: current and the one before it stay even though they are old
    assert releases_to_delete(IDS, IDS[1], 5) == [IDS[2]]
    assert releases_to_delete(IDS, IDS[1], 1) == [IDS[2], IDS[3], IDS[4], IDS[5], IDS[6]]
    # a release a running gunicorn master was started from is protected
    assert releases_to_delete(IDS, IDS[-1], 5, protect=[IDS[0]]) == IDS[1:3]
    # nothing to do, and names that are not releases are never touched
    assert releases_to_delete(IDS[:3] + ["lost+found"], IDS[2], 5) == []
    assert releases_to_delete(IDS, None, 2) == IDS[:6]


def test_requirements_hash_and_django_line():
    text = "# comment\n-r base.txt\ndjango-extensions\nDjango>=4.2,<5.1  # keep a range\ngunicorn\n"
    assert requirements_hash(text) == requirements_hash(text.encode())
    assert requirements_hash(text) != requirements_hash(text + "\n")
    assert django_requirement(text) == "Django>=4.2,<5.1"
    assert django_requirement("DJANGO[argon2]~=4.2\n") == "DJANGO[argon2]~=4.2"
    assert django_requirement("djangorestframework\n") is None
    assert upgrade_spec(text) == "Django>=4.2,<5.1"
    with pytest.raises(DeployError, match="requirements.txt has no Django requirement"):
        upgrade_spec("gunicorn\n")
    with pytest.raises(DeployError, match="no version constraint"):
        upgrade_spec("Django\n")


STATE = """layout=ok
current=releases/20240102120000-bbbbbbb
live=b
slot=a /srv/demo/releases/20240101120000-aaaaaaa 1717000000
slot=b /srv/demo/releases/20240102120000-bbbbbbb -
release=20240101120000-aaaaaaa 1111111111111111111111111111111111111111 hash1 20240101120000-aaaaaaa
release=20240102120000-bbbbbbb 2222222222222222222222222222222222222222 hash1 20240101120000-aaaaaaa
release=20240103120000-ccccccc - - -
program=demo-web-a RUNNING 4141 /srv/demo/releases/20240101120000-aaaaaaa /srv/demo/slots/a/.venv/bin/python
program=demo-web-b RUNNING 4242 /srv/demo/releases/20240102120000-bbbbbbb/src /srv/demo/slots/b/.venv/bin/python
program=demo-worker FATAL 0 - -
"""


def test_parse_state():
    st = parse_state(STATE)
    assert st.configured and st.current == "20240102120000-bbbbbbb"
    assert st.current_info == ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, "hash1", "20240101120000-aaaaaaa")
    assert st.releases["20240103120000-ccccccc"] == ReleaseInfo("20240103120000-ccccccc", None, None, None)
    assert st.previous == "20240101120000-aaaaaaa"
    web = st.programs["demo-web-b"]
    assert web.running and web.pid == 4242
    assert not st.programs["demo-worker"].running and st.programs["demo-worker"].pid is None
    assert web.cwd == "/srv/demo/releases/20240102120000-bbbbbbb/src"
    # a slot's python is named through its link: the release it runs is the one its master is in (chdir)
    assert in_use(L, st) == {"20240101120000-aaaaaaa", "20240102120000-bbbbbbb"}
    assert parse_state("layout=missing\n").configured is False
    assert parse_state("layout=ok\ncurrent=\n").current is None


def test_parse_state_reads_the_slots_and_the_live_one():
    st = parse_state(STATE)
    assert st.live == "b"
    assert st.slots == {"a": "20240101120000-aaaaaaa", "b": "20240102120000-bbbbbbb"}
    assert st.cold_at == {"a": 1717000000}                   # slot a was drained: it stops then
    fresh = parse_state("layout=ok\ncurrent=\nlive=\nslot=a - -\nslot=b - -\n")
    assert (fresh.live, fresh.slots, fresh.cold_at) == (None, {"a": None, "b": None}, {})
    odd = parse_state("layout=ok\nlive=c\nslot=c /srv/demo/releases/20240101120000-aaaaaaa -\n"
                      "slot=a /srv/demo/releases/not-a-release x\nslot=b releases/20240101120000-aaaaaaa/ -\n")
    assert odd.live is None and odd.slots == {"a": None, "b": "20240101120000-aaaaaaa"} and odd.cold_at == {}
    assert parse_state("layout=ok\n").live is None and parse_state("layout=ok\n").slots == {}


def test_a_program_run_through_a_link_protects_only_the_release_it_is_in():
    st = parse_state(STATE.replace("/srv/demo/releases/20240101120000-aaaaaaa /srv/demo/slots/a", "/srv/demo /srv/demo/slots/a"))
    assert in_use(L, st) == {"20240102120000-bbbbbbb"}
    stopped = parse_state(STATE.replace("demo-web-a RUNNING 4141", "demo-web-a STOPPED 0"))
    assert in_use(L, stopped) == {"20240102120000-bbbbbbb"}                 # a cold slot protects nothing


def test_release_of_interpreter():
    assert release_of_interpreter(L, "/srv/demo/releases/20240101120000-aaaaaaa/.venv/bin/python") \
        == "20240101120000-aaaaaaa"
    assert release_of_interpreter(L, "/usr/bin/python3") is None
    assert release_of_interpreter(L, "master [demo.wsgi:application]") is None   # setproctitle
    assert release_of_interpreter(L, None) is None


def test_requirements_change_says_why():
    cur = ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, "h1", "v1")
    assert requirements_change(None, "h1") == (True, "no release is deployed yet")
    assert requirements_change(cur, "h2") == (True, "requirements.txt changed since release 20240102120000-bbbbbbb")
    assert requirements_change(cur, "h1") == (False, "requirements.txt unchanged since release 20240102120000-bbbbbbb")
    proxy_like = ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, None, None)
    assert requirements_change(proxy_like, "h1")[0] is True


def test_venv_plan():
    cur = ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, "h1", "v1")
    new = "20240103120000-ccccccc"
    same = venv_plan(cur, "h1", new, deps=None)
    assert (same.action, same.source, same.venv_id) == ("reuse", cur.id, "v1")
    changed = venv_plan(cur, "h2", new, deps=None)
    assert (changed.action, changed.venv_id) == ("install", new)
    assert "changed since release" in changed.reason
    forced = venv_plan(cur, "h1", new, deps=True)
    assert (forced.action, forced.reason) == ("install", "asked to reinstall")
    kept = venv_plan(cur, "h2", new, deps=False)
    assert kept.action == "reuse" and "--no-deps" in kept.reason
    first = venv_plan(None, "h1", new, deps=False)
    assert first.action == "install" and first.reason == "no release is deployed yet"
    upgraded = venv_plan(cur, "h1", new, deps=None, upgrade_django=True)
    assert (upgraded.action, upgraded.venv_id) == ("reuse", new)   # new content: a venv id of its own


def test_migration_files_missing():
    assert migration_files_missing(["notes/migrations/0001_initial.py", "notes/migrations/0002_x.py"],
                                   ["notes/migrations/0001_initial.py"]) == ["notes/migrations/0002_x.py"]
    assert migration_files_missing(["a"], ["a", "b"]) == []


def test_layout_and_env_text():
    assert (L.root, L.current, L.env_file, L.mirror, L.lock_dir, L.audit_log) == (
        "/srv/demo", "/srv/demo/current", "/srv/demo/shared/.env", "/srv/demo/repo.git",
        "/srv/demo/shared/deploy.lock", "/srv/demo/shared/deploys.log")
    assert (L.web_program, L.worker_program, L.project) == ("demo-web", "demo-worker", "demo")
    text = env_text(L, secret_key="k3y", db_password="p w/@x", db_host="10.0.0.7", broker_host="10.0.0.6",
                    hosts=["172.31.0.5", "10.0.0.4"], extra={"FOO": "x; whoami", "SECRET_KEY": "not this"})
    assert text == (
        "SECRET_KEY=k3y\nDJANGO_SECRET_KEY=k3y\nDEBUG=false\nDJANGO_DEBUG=false\n"
        "DATABASE_URL=postgres://demo:p%20w%2F%40x@10.0.0.7:5432/demo\n"
        "ALLOWED_HOSTS=172.31.0.5,10.0.0.4\nDJANGO_ALLOWED_HOSTS=172.31.0.5,10.0.0.4\n"
        "CSRF_TRUSTED_ORIGINS=http://172.31.0.5,https://172.31.0.5,http://10.0.0.4,https://10.0.0.4\n"
        "DJANGO_CSRF_TRUSTED_ORIGINS=http://172.31.0.5,https://172.31.0.5,http://10.0.0.4,https://10.0.0.4\n"
        "MEDIA_ROOT=/srv/demo/shared/media\n"
        "REDIS_URL=redis://10.0.0.6:6379/0\nCELERY_BROKER_URL=redis://10.0.0.6:6379/0\n"
        "FOO='x; whoami'\n")       # whipup's own names are not overridden by extra values
    assert parse_env_text(text)["FOO"] == "x; whoami"
    assert "CELERY" not in env_text(L, secret_key="k", db_password="p", db_host="h", broker_host=None)
    # no db role: SQLite in shared/, which outlives the releases
    assert "DATABASE_URL=sqlite:////srv/demo/shared/db.sqlite3\n" in env_text(
        L, secret_key="k", db_password=None, db_host=None, broker_host=None)


def test_the_env_file_is_sourced_by_sh_and_read_back_by_gunicorn_settings_alike(tmp_path):
    import subprocess

    values = {"A": "x; whoami", "B": "it's \"quoted\" $HOME `id`", "C": "", "D": "plain"}
    (tmp_path / "env").write_text(env_file_text(values))
    out = subprocess.run(["sh", "-c", f". {tmp_path}/env && printf '%s\\n' \"$A\" \"$B\" \"$C\" \"$D\""],
                         capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:4] == list(values.values())
    assert parse_env_text(env_file_text(values)) == values
    with pytest.raises(ValueError, match="B: a value may not hold a newline"):
        env_file_text({"B": "a\nb"})


def test_same_code_compares_the_app_tree_else_the_commit():
    info = ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, "h1", "v1", "t" * 40)
    assert same_code(info, "3" * 40, "t" * 40)          # another commit of the repository, same app tree
    assert not same_code(info, "2" * 40, "u" * 40)
    old = ReleaseInfo("20240102120000-bbbbbbb", "2" * 40, "h1", "v1")
    assert same_code(old, "2" * 40, "t" * 40) and not same_code(old, "3" * 40, "t" * 40)
    assert not same_code(None, "2" * 40, None)
    line = "layout=ok\nrelease=20240102120000-bbbbbbb " + "2" * 40 + " h1 v1 " + "t" * 40 + "\n"
    assert parse_state(line).releases["20240102120000-bbbbbbb"] == info


def test_previous_is_what_was_current_before_not_just_the_next_older():
    # A deployed, B deployed, rolled back to A, C deployed from A: rollback from C goes to A, not B
    a, b, c = "20240101120000-aaaaaaa", "20240102120000-bbbbbbb", "20240103120000-ccccccc"
    text = (f"layout=ok\ncurrent=releases/{c}\nrelease={a} - - - - -\nrelease={b} - - - - {a}\n"
            f"release={c} - - - - {a}\n")
    st = parse_state(text)
    assert st.current_info.previous == a and st.previous == a
    assert releases_to_delete([a, b, c], c, 1, previous=a) == [b]
    # the marked one is gone (or missing): the newest older one
    assert parse_state(text.replace(f"release={a} - - - - -\n", "")).previous == b


def test_deploy_layout_agrees_with_the_contract_configure_uses(cfg):
    """docs/remote-layout.md is spelled once in code (fabfile/layout.py): configure's templates see deploy's paths."""
    from fabfile.configure.templates import context
    from fabfile.layout import WEB_PORT
    from fabfile.nodes import Node

    node = Node("app", 0, "t-app-0", "i-app0", "running", "10.0.0.10", None, None)
    mine, theirs = Layout.of(cfg), context(cfg, node, [node])["app"]
    assert (mine.user, mine.root, mine.releases, mine.shared, mine.current, mine.env_file) == (
        theirs["user"], theirs["root"], theirs["releases"], theirs["shared"], theirs["current"], theirs["env_file"])
    assert (mine.web_program, mine.worker_program, mine.launcher) == (
        theirs["web_program"], theirs["worker_program"], theirs["launcher"])
    assert f"{mine.current}/.venv" == theirs["venv"] == mine.current_venv
    assert (mine.user, mine.group, mine.root, mine.releases, mine.shared, mine.current, mine.logs, mine.env_file) == (
        "demo", "demo", "/srv/demo", "/srv/demo/releases", "/srv/demo/shared", "/srv/demo/current", "/var/log/demo",
        "/srv/demo/shared/.env")
    assert (mine.web_program, mine.worker_program, mine.project, mine.wsgi) == (
        "demo-web", "demo-worker", "demo", "demo.wsgi:application")
    assert theirs["port"] == WEB_PORT == 8000


def test_a_release_an_interrupted_deploy_left_half_made_is_never_a_target_and_goes_first():
    a, b, c = "20240101120000-aaaaaaa", "20240102120000-bbbbbbb", "20240103120000-ccccccc"
    # b was current; c, its successor, was killed before the switch (partial); then a newer deploy d ...
    text = (f"layout=ok\ncurrent=releases/{b}\nrelease={a} - - - - - -\nrelease={b} - - - - {a} -\n"
            f"release={c} - - - - {b} partial\n")
    st = parse_state(text)
    assert st.releases[c].partial and not st.releases[b].partial and st.partial == {c}
    assert st.previous == a                                  # rollback from b goes to a, never to half-made c
    moved = parse_state(text.replace(f"current=releases/{b}", f"current=releases/{c}"))
    assert moved.previous == b and moved.partial == set()   # current is never "partial" (its mark goes at the switch)
    d = "20240104120000-ddddddd"
    # keep 5: nothing is beyond it, yet the partial release goes; keep 1: b (previous) stays, a goes too
    assert releases_to_delete([a, b, c, d], d, 5, previous=b, partial=st.partial) == [c]
    assert releases_to_delete([a, b, c, d], d, 1, previous=b, partial=st.partial) == [a, c]
    assert releases_to_delete([a, b, c, d], d, 5, previous=b, partial={c}, protect={c}) == []   # a process runs it
