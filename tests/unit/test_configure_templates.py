"""Templates: rendered locally with StrictUndefined; errors name the template and line; the shipped ones."""
import dataclasses
from pathlib import Path

import pytest
import yaml

from fabfile.config import load_config
from fabfile.configure.templates import TemplateError, context, environment, render, render_role_files
from fabfile.nodes import Node
from fabfile.vault import secret

REPO = Path(__file__).resolve().parents[2]


def node(role, index, ip):
    return Node(role, index, f"t-{role}-{index}", f"i-{role}{index}", "running", ip, None, None)


NODES = [node("proxy", 0, "10.0.0.5"), node("app", 0, "10.0.0.10"), node("app", 1, "10.0.0.11"),
         node("db", 0, "10.0.0.20"), node("worker", 0, "10.0.0.30")]


@pytest.fixture
def shipped(cfg):
    """The shipped roles.yaml (copied to tmp_path), reading the repository's templates."""
    return dataclasses.replace(cfg, configure=dataclasses.replace(cfg.configure, templates_dir=REPO / "templates"))


def rendered(cfg, role: str, index: int = 0) -> dict[str, str]:
    n = next(x for x in NODES if x.role == role and x.index == index)
    return {f.path: f.content for f in render_role_files(cfg, n, NODES)}


def test_nginx_balances_over_every_app_node(shipped):
    files = rendered(shipped, "proxy")
    site = files["/etc/nginx/sites-available/whipup.conf"]
    # the servers are in their own file (each app node's live slot: configure.slotsync, deploy.switchover)
    assert "upstream demo_web {\n" in site and "    include /etc/nginx/whipup/demo-upstream.conf;\n" in site
    assert "(t-app-0, t-app-1)" in site and "server 10.0.0.10" not in site
    assert "/etc/nginx/whipup/demo-upstream.conf" not in files       # added by configure with the live slots
    assert "proxy_pass http://demo_web;" in site
    assert "proxy_next_upstream error timeout http_502 http_503;" in site
    assert "alias /srv/demo/current/static/;" in site


def test_nginx_without_app_nodes_still_renders_a_valid_site(shipped):
    n = NODES[0]
    (site,) = render_role_files(shipped, n, [n])
    assert "upstream" not in site.content and "return 503;" in site.content


def test_postgres_listens_privately_and_lets_in_only_app_and_worker_nodes(shipped):
    files = rendered(shipped, "db")
    assert "listen_addresses = 'localhost,10.0.0.20'" in files["/etc/postgresql/<postgresql-version>/main/conf.d/whipup.conf"]
    hba = [line.split() for line in files["/etc/postgresql/<postgresql-version>/main/pg_hba.conf"].splitlines()
           if line.startswith("host ")]
    network = [h for h in hba if not h[3].startswith(("127.", "::1"))]
    assert [(h[1], h[2], h[3], h[4]) for h in network] == [
        ("demo", "demo", "10.0.0.10/32", "scram-sha-256"), ("demo", "demo", "10.0.0.11/32", "scram-sha-256"),
        ("demo", "demo", "10.0.0.30/32", "scram-sha-256")]
    assert "10.0.0.5" not in files["/etc/postgresql/<postgresql-version>/main/pg_hba.conf"]


def test_supervisor_programs_follow_the_remote_layout(shipped):
    web = rendered(shipped, "app", 1)["/etc/supervisor/conf.d/demo-web.conf"]
    programs = {p.split("]\n", 1)[0]: p.split("]\n", 1)[1] for p in web.split("\n[program:")[1:]}
    assert list(programs) == ["demo-web-a", "demo-web-b", "demo-web-boot"]
    # one gunicorn per slot, on the slot's link and port; the launcher loads the environment; the settings
    # module and WSGI callable are the release's, not here; supervisord never starts a slot by itself
    for slot, port in (("a", 8000), ("b", 8001)):
        p = programs[f"demo-web-{slot}"]
        assert f"command=/bin/sh /srv/demo/shared/whipup-exec /srv/demo/slots/{slot} web --bind 10.0.0.11:{port}\n" in p
        assert "user=demo\n" in p and "stopsignal=TERM\n" in p and "directory=/srv/demo\n" in p
        assert "autostart=false\n" in p and "stopwaitsecs=30\n" in p
        assert f"stdout_logfile=/var/log/demo/web-{slot}.log\n" in p
        assert "DJANGO_SETTINGS_MODULE" not in p and "wsgi" not in p
    # at a boot supervisord starts the slot slots/live names, nothing when there is none
    boot = programs["demo-web-boot"]
    assert ("command=/bin/sh -c 'slot=$(readlink /srv/demo/slots/live) || exit 0; "
            "supervisorctl start demo-web-\"$slot\"; exit 0'\n") in boot
    assert "user=root\n" in boot and "autostart=true\n" in boot and "autorestart=false\n" in boot
    worker = rendered(shipped, "worker")
    program = worker["/etc/supervisor/conf.d/demo-worker.conf"]
    assert "[program:demo-worker]\n" in program
    assert "command=/bin/sh /srv/demo/shared/whipup-exec /srv/demo/current worker --loglevel INFO" in program
    assert "directory=/srv/demo\n" in program and "stopwaitsecs=60\n" in program
    assert "bind 10.0.0.30 127.0.0.1 -::1\n" in worker["/etc/redis/redis.conf"]


def test_no_secret_reaches_a_template(shipped):
    password = secret(shipped, "db_password")
    for role in ("proxy", "app", "db", "worker"):
        assert all(password not in text for text in rendered(shipped, role).values())
    assert password not in repr(context(shipped, NODES[3], NODES))


def with_templates(tmp_path: Path, files: dict[str, str], templates: list[dict]):
    """A roles.yaml whose proxy role has `templates`, reading templates from tmp_path/tpl."""
    tpl = tmp_path / "tpl"
    for name, text in files.items():
        (tpl / name).parent.mkdir(parents=True, exist_ok=True)
        (tpl / name).write_text(text)
    (tmp_path / "src").mkdir(exist_ok=True)
    data = yaml.safe_load((REPO / "roles.yaml").read_text())
    data["app"]["repo"] = "src"
    data["configure"] = {"templates_dir": "tpl"}
    data["roles"]["proxy"]["templates"] = templates
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_undefined_variable_names_template_and_line(tmp_path):
    cfg = with_templates(tmp_path, {"etc/a.conf.j2": "# {{ node.name }}\nok\nvalue = {{ nope }}\n"},
                         [{"src": "etc/a.conf.j2"}])
    with pytest.raises(TemplateError) as info:
        render_role_files(cfg, NODES[0], NODES)
    assert str(info.value) == "tpl/etc/a.conf.j2:3: 'nope' is undefined"


def test_undefined_attribute_and_syntax_error(tmp_path):
    cfg = with_templates(tmp_path, {"a.j2": "\n\n\n{{ node.nmae }}\n", "b.j2": "x\n{% if %}\n"},
                         [{"src": "a.j2", "dest": "/etc/a"}])
    with pytest.raises(TemplateError, match=r"^tpl/a\.j2:4: 'dict object' has no attribute 'nmae'$"):
        render_role_files(cfg, NODES[0], NODES)
    env = environment(cfg.configure.templates_dir)
    with pytest.raises(TemplateError, match=r"tpl/b\.j2:2: Expected an expression"):
        render(env, "b.j2", {}, show=lambda f: str(Path(f).relative_to(tmp_path)))


def test_an_error_in_an_included_template_names_that_file(tmp_path):
    cfg = with_templates(tmp_path, {"main.j2": "a\n{% include 'part.j2' %}\n", "part.j2": "1\n2\n{{ missing }}\n"},
                         [{"src": "main.j2", "dest": "/etc/main"}])
    with pytest.raises(TemplateError, match=r"^tpl/part\.j2:3: 'missing' is undefined$"):
        render_role_files(cfg, NODES[0], NODES)


def test_missing_template_and_dest_templating(tmp_path):
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "gone.j2"}])
    with pytest.raises(TemplateError, match=r"^tpl/gone\.j2: template not found$"):
        render_role_files(cfg, NODES[0], NODES)
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "a.j2", "dest": "/etc/{{ app.name }}-{{ node.index }}.conf"}])
    assert [f.path for f in render_role_files(cfg, NODES[0], NODES)] == ["/etc/demo-0.conf"]
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "a.j2", "dest": "/etc/{{ nope }}"}])
    with pytest.raises(TemplateError, match=r"^roles\.yaml: roles\.proxy\.templates\[0\]\.dest: 'nope' is undefined"):
        render_role_files(cfg, NODES[0], NODES)
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "a.j2", "dest": "/etc/{{ node.name }} x"}])
    with pytest.raises(TemplateError, match="not an absolute file path"):
        render_role_files(cfg, NODES[0], NODES)


def test_owner_without_group_means_the_users_group(tmp_path):
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "a.j2", "owner": "redis", "mode": "640"},
                                                     {"src": "a.j2", "dest": "/etc/b", "owner": "root:adm"}])
    a, b = render_role_files(cfg, NODES[0], NODES)
    assert (a.path, a.owner, a.group, a.mode) == ("/a", "redis", "redis", "0640")
    assert (b.owner, b.group, b.mode) == ("root", "adm", "0644")


def test_configure_settings_resolve_against_roles_yaml(tmp_path):
    from fabfile.config import ConfigError

    (tmp_path / "src").mkdir()
    data = yaml.safe_load((REPO / "roles.yaml").read_text())
    data["app"]["repo"] = "src"
    del data["configure"]
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert (cfg.configure.templates_dir, cfg.configure.apt_max_age_hours) == (tmp_path / "templates", 24)
    data["configure"] = {"apt_max_age_hours": -1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^roles\.yaml: configure\.apt_max_age_hours: expected an integer"):
        load_config(path)
    data["configure"] = {"template_dir": "x"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"configure\.template_dir: unknown key \(did you mean 'templates_dir'\?\)"):
        load_config(path)


def test_rehearsal_renders_every_role_before_anything_exists(roles_file):
    from fabfile.config import load_config
    from fabfile.configure.templates import rehearsal_nodes, rehearse

    (roles_file.parent / "templates").symlink_to(Path(__file__).resolve().parents[2] / "templates")
    cfg = load_config(roles_file)
    nodes = rehearsal_nodes(cfg)
    assert sorted(n.role for n in nodes) == ["app", "db", "proxy", "worker"]
    assert all(n.private_ip.startswith("192.0.2.") for n in nodes)
    assert rehearse(cfg) == sum(len(r.templates) * r.count for r in cfg.roles)   # the monitor's count is 0


@pytest.mark.parametrize("data, byte, offset", [(b"# caf\xe9\n", "0xe9", 5), (b"\xff\xfe#\x00", "0xff", 0)])
def test_a_template_that_is_not_utf8_names_the_byte(tmp_path, data, byte, offset):
    cfg = with_templates(tmp_path, {"a.j2": "x\n"}, [{"src": "a.j2", "dest": "/etc/a"}])
    (tmp_path / "tpl" / "a.j2").write_bytes(data)
    with pytest.raises(TemplateError) as info:
        render_role_files(cfg, NODES[0], NODES)
    assert str(info.value) == (f"tpl/a.j2: not UTF-8 text (byte {byte} at offset {offset}, in it or a template it "
                               f"includes): save it as UTF-8")


def test_compiled_templates_are_kept_in_the_state_dir_and_compiled_again_when_the_text_changes(tmp_path, monkeypatch):
    import jinja2

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("port {{ port }}\n")
    cache = tmp_path / "state" / ".cache"
    compiled = []
    real = jinja2.Environment._compile
    monkeypatch.setattr(jinja2.Environment, "_compile", lambda self, *a: compiled.append(a[1]) or real(self, *a))

    assert environment(tmp_path / "t", cache).get_template("a.j2").render(port=80) == "port 80\n"
    assert environment(tmp_path / "t", cache).get_template("a.j2").render(port=81) == "port 81\n"
    assert len(compiled) == 1                              # the second run loaded the first one's code
    assert (cache / "jinja").stat().st_mode & 0o777 == 0o700
    (tmp_path / "t" / "a.j2").write_text("listen {{ port }}\n")
    assert environment(tmp_path / "t", cache).get_template("a.j2").render(port=82) == "listen 82\n"
    assert len(compiled) == 2


def test_a_cache_dir_others_can_write_is_not_used(tmp_path, monkeypatch):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("x\n")
    (tmp_path / ".cache" / "jinja").mkdir(parents=True)
    (tmp_path / ".cache" / "jinja").chmod(0o777)
    env = environment(tmp_path / "t", tmp_path / ".cache")
    assert env.bytecode_cache is None and env.get_template("a.j2").render() == "x\n"
    assert list((tmp_path / ".cache" / "jinja").iterdir()) == []
