"""fab env | env.set | env.unset over scripted fake hosts (deploy_fakes): the lock, shared/.env on every app and
worker node, the graceful reloads, the audit line, the way back when the app turns unhealthy, the dry run;
and that a secret value appears nowhere in the output, the audit log or an error."""
from __future__ import annotations

import io
from dataclasses import replace

import pytest
from deploy_fakes import NODES, Rel, Result, World, make_cluster
from invoke import Context, Exit

from fabfile import appenv
from fabfile.appconfig import SecretSpec
from fabfile.appenv import Store
from fabfile.deploy import envchange, envtasks
from fabfile.deploy.envchange import EnvOptions
from fabfile.deploy.errors import DeployError
from fabfile.deploy.lock import parse_audit
from fabfile.deploy.releases import requirements_hash
from fabfile.state import cluster_dir

SECRET = "Zq9-very-secret-4711"
R1, R2 = "20240101000000-1111111", "20240201000000-2222222"
DEPLOYED = {R1: Rel("1" * 40, requirements_hash("Django\n"), R1),
            R2: Rel("2" * 40, requirements_hash("Django\n"), R1, previous=R1)}
APP, WORKER, PROXY = "t-app-0", "t-worker-0", "t-proxy-0"


def no_cloud():
    pytest.fail("the SSM client was asked for")


@pytest.fixture
def ecfg(cfg):
    """roles.yaml with app.env FOO=1 and a file secret API_KEY (its value in the store)."""
    c = replace(cfg, app=replace(cfg.app, env=(("FOO", "1"),), secrets=(SecretSpec("API_KEY"),)))
    appenv.save_store(c, Store(), Store(secrets={"API_KEY": "old-key"}))
    return c


@pytest.fixture
def world():
    w = World("3" * 40)
    yield w
    assert not w.unclassified


@pytest.fixture
def site(ecfg, world):
    """proxy, app and worker on R2, gunicorn and celery running; each host keeps the .env texts it got."""
    cl, hosts, out = make_cluster(ecfg, world, DEPLOYED, R2)
    for host in hosts.values():
        host.env_texts = []
        host._env = recorder(host.env_texts)
    return cl, hosts, out


def recorder(texts: list[str]):
    def write_env(command, stdin, rel):
        texts.append(stdin)
        return Result(0, "changed\n")
    return write_env


def set_change(cfg, pairs, secret):
    before = appenv.load_store(cfg)
    return envchange.prepare(cfg, "env.set", before, appenv.apply_set(cfg, before, pairs, secret), [], no_cloud)


def everything(out, hosts, cfg) -> str:
    """All the text a run left: its output, the anchor's audit log, the local audit log."""
    local = cluster_dir(cfg) / "deploys.log"
    return "\n".join(out) + "".join(hosts["app"].audit) + (local.read_text() if local.exists() else "")


def test_env_set_writes_every_app_and_worker_node_reloads_and_audits(ecfg, site, world):
    cl, hosts, out = site
    envchange.apply(cl, set_change(ecfg, [("API_KEY", SECRET)], True), EnvOptions(health_timeout=5))
    # gunicorn: the same release booted again in the other slot (the new .env), switched to, the old one drained
    assert world.stages(APP) == ["lock", "state", ".env", "boot", "switch", "go live", "drain", "audit", "unlock"]
    assert world.stages(WORKER) == ["state", ".env", "celery restart"]
    assert world.stages(PROXY) == ["probe", "upstream", "probe"]     # reached before any traffic; the gate
    app = hosts["app"]
    assert ("boot", R2, True) in app.calls and app.live == "b" and app.current == R2
    assert (app.slots["a"].release, app.slots["a"].running, app.slots["a"].workers) == (R2, True, 1)
    assert world.reached(hosts["proxy"].upstream) == [(APP, "b", R2)]
    assert world.log.index((PROXY, "upstream")) < world.log.index((WORKER, "celery restart"))
    for role in ("app", "worker"):
        text = hosts[role].env_texts[-1]
        assert text.endswith("FOO=1\nAPI_KEY=" + SECRET + "\n") and "DATABASE_URL=postgres://" in text and "@10.0.0.20:5432/" in text
    assert hosts["proxy"].env_texts == []
    (record,) = parse_audit("".join(hosts["app"].audit))
    assert (record.action, record.result, record.from_release, record.detail) == ("env.set", "ok", R2,
                                                                                 "set API_KEY=***")
    assert appenv.load_store(ecfg).secrets == {"API_KEY": SECRET}
    assert hosts["app"].lock is None
    assert "  API_KEY (secret): *** (changed) (roles.yaml app.secrets, file " in "\n".join(out)
    assert SECRET not in everything(out, hosts, ecfg)
    assert (cluster_dir(ecfg) / "deploys.log").read_text().count("env.set") == 1


def test_the_app_unhealthy_after_the_change_gets_the_previous_environment_back(ecfg, site, world):
    cl, hosts, out = site
    hosts["app"].fail("gate", message="500 on the new env")      # it boots, then fails through the proxy
    proxy_env = hosts["app"]._env

    def env_then_heal(command, stdin, rel):     # the previous .env heals the app
        if SECRET not in stdin:
            hosts["app"].failures.clear()
        return proxy_env(command, stdin, rel)
    hosts["app"]._env = env_then_heal
    with pytest.raises(DeployError) as info:
        envchange.apply(cl, set_change(ecfg, [("API_KEY", SECRET)], True), EnvOptions(health_timeout=0.3))
    assert "env.set failed: " in str(info.value) and str(info.value).endswith("the previous environment is back")
    assert world.stages(APP).count(".env") == 2 and world.stages(APP).count("boot") == 2
    assert world.stages(WORKER) == ["state", ".env", ".env", "state", "celery restart"]   # only once healthy
    app = hosts["app"]            # the previous .env in a slot booted again, switched to: b, then a again
    assert [r for s, r, ok in app.calls if s == "boot" and ok] == [R2, R2] and app.live == "a"
    assert world.reached(hosts["proxy"].upstream) == [(APP, "a", R2)] and app.current == R2
    assert "API_KEY=old-key\n" in hosts["worker"].env_texts[-1]
    assert appenv.load_store(ecfg).secrets == {"API_KEY": "old-key"}
    (record,) = parse_audit("".join(hosts["app"].audit))
    assert record.result == "rolled-back" and record.detail.startswith("set API_KEY=***: ")
    assert SECRET not in everything(out, hosts, ecfg) + str(info.value)


def test_dry_run_changes_nothing_and_masks(ecfg, site, world):
    cl, hosts, out = site
    envchange.apply(cl, set_change(ecfg, [("API_KEY", SECRET)], True), EnvOptions(dry_run=True))
    assert set(world.stages()) == {"state", "lock read"}
    assert appenv.load_store(ecfg).secrets == {"API_KEY": "old-key"}
    assert out[0] == "dry run: nothing is changed. env.set would change the app's environment:"
    assert out[-1] == ("  then: gunicorn booted again in the other slot on t-app-0, the switch to it, then the "
                       "health gate; celery restart on t-worker-0")
    assert SECRET not in "\n".join(out)


def test_programs_not_running_are_left_alone(ecfg, site, world):
    cl, hosts, out = site
    hosts["worker"].celery = None                  # celery not running
    envchange.apply(cl, set_change(ecfg, [("NEW", "v")], False), EnvOptions(health_timeout=5))
    assert world.stages(WORKER) == ["state", ".env"]
    assert "NEW=v\n" in hosts["worker"].env_texts[-1]


# --- the tasks --------------------------------------------------------------------------------------

@pytest.fixture
def tasks_on(monkeypatch, ecfg, roles_file, site):
    """The env tasks against the fake site: roles.yaml declares what `ecfg` does; the cloud lists the nodes."""
    text = roles_file.read_text().replace("  keep_releases: 5\n", "  keep_releases: 5\n  env: {FOO: '1'}\n"
                                          "  secrets: [API_KEY]\n", 1)
    roles_file.write_text(text)
    cl, hosts, out = site
    opened = []

    class FakeCloud:
        def client(self, service):
            opened.append(service)
            return object()

    monkeypatch.setattr(envtasks, "open_cloud", lambda *a, **k: FakeCloud())
    monkeypatch.setattr(envtasks, "find_nodes", lambda ec2, name: list(NODES.values()))

    def fake_open_cluster(cfg, ec2, *, roles, seen, out):
        cl.out = out
        return cl
    monkeypatch.setattr(envtasks, "open_cluster", fake_open_cluster)
    return hosts, opened


def test_task_env_set_from_stdin_keeps_the_secret_out_of_every_output(tasks_on, roles_file, capsys, monkeypatch,
                                                                       ecfg, world):
    hosts, opened = tasks_on
    monkeypatch.setattr("sys.stdin", io.StringIO(f"# keys\nAPI_KEY={SECRET}\nOTHER=x y\n"))
    envtasks.set_(Context(), "-", config=str(roles_file), secret=True, health_timeout="5")
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err + everything([], hosts, ecfg)
    assert "env.set: set API_KEY=***, OTHER=***; on 2 node(s) in " in printed.out
    assert f"API_KEY={SECRET}\n" in hosts["app"].env_texts[-1]
    assert opened == ["ec2"]                        # no SSM secret: no SSM client

    envtasks.show(Context(), config=str(roles_file))
    listed = capsys.readouterr().out
    assert [line.split()[:2] for line in listed.splitlines()] == [["NAME", "VALUE"], ["FOO", "1"],
                                                                  ["API_KEY", "***"], ["OTHER", "***"]]
    assert SECRET not in listed


@pytest.mark.parametrize("call, message", [
    (lambda cfg: envtasks.set_(Context(), SECRET, config=cfg, secret=True), "has no '='"),
    (lambda cfg: envtasks.set_(Context(), "=" + SECRET, config=cfg), "the name before '=' is empty"),
    (lambda cfg: envtasks.set_(Context(), "A=b\nc" + SECRET, config=cfg), "may not hold a newline"),
    (lambda cfg: envtasks.set_(Context(), "DATABASE_URL=" + SECRET, config=cfg), "set by whipup itself"),
    (lambda cfg: envtasks.set_(Context(), "FOO=" + SECRET, config=cfg, secret=True), "set it without --secret"),
    (lambda cfg: envtasks.set_(Context(), "A=1", config=cfg, health_timeout="0"), "--health-timeout: expected"),
    (lambda cfg: envtasks.unset(Context(), "NOPE", config=cfg), "NOPE is not set"),
    (lambda cfg: envtasks.unset(Context(), "PATH", config=cfg), "PATH is set by whipup itself"),
])
def test_bad_input_exits_non_zero_before_anything_changes(tasks_on, roles_file, ecfg, world, call, message):
    hosts, opened = tasks_on
    before = appenv.load_store(ecfg)
    with pytest.raises(Exit) as info:
        call(str(roles_file))
    assert info.value.code == 1 and message in info.value.message
    assert SECRET not in info.value.message
    assert opened == [] and world.log == []
    assert appenv.load_store(ecfg) == before


def test_task_unset_hides_a_roles_yaml_name_and_a_cluster_without_nodes_only_saves(tasks_on, roles_file, capsys,
                                                                                   monkeypatch, ecfg, world):
    monkeypatch.setattr(envtasks, "find_nodes", lambda ec2, name: [])
    envtasks.unset(Context(), "FOO", config=str(roles_file))
    printed = capsys.readouterr().out
    assert "FOO: hidden from the app (roles.yaml app.env has it; fab env.set brings it back)" in printed
    assert "env.unset: saved; cluster whipup-demo has no app or worker node yet: the next deploy writes the .env" in printed
    assert appenv.load_store(ecfg).unset == {"FOO"} and world.log == []
    envtasks.unset(Context(), "FOO", config=str(roles_file))
    assert "env.unset: the app's environment does not change; no node touched" in capsys.readouterr().out


def test_a_deploys_env_holds_the_apps_variables(ecfg, site):
    from fabfile.deploy.planning import dotenv

    cl, hosts, out = site
    assert dotenv(cl).endswith("FOO=1\nAPI_KEY=old-key\n")
    appenv.save_store(ecfg, appenv.load_store(ecfg), Store(secrets={}))
    with pytest.raises(appenv.EnvError, match=r"app.secrets\[0\]: API_KEY has no value"):
        dotenv(cl)
