"""Inspection: root, settings, WSGI, Procfile, release command, Celery app and Python, on trees made by
django-admin startproject and wagtail start at test time, and on small hand-written trees."""
from __future__ import annotations

import shutil

import pytest

from fabfile.deploy.errors import DeployError
from fabfile.project.detect import inspect_tree
from fabfile.project.errors import InspectError
from fabfile.project.runtime import parse_procfile, python_constraint
from project_trees import MANAGE, app, hand, listing, minimal, startproject, wagtail_start


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    return {"django": startproject(base / "django"), "wagtail": wagtail_start(base / "wagtail")}


def where(project, what):
    return {f.what: f for f in project.findings}[what].where


def test_startproject_settings_and_wsgi_from_its_files(generated, tmp_path):
    tree = tmp_path / "p"
    shutil.copytree(generated["django"], tree)
    (tree / "requirements.txt").write_text("Django>=5.2,<6\n")
    p = inspect_tree(*listing(tree), app())
    assert (p.root, p.settings, p.wsgi) == ("", "mysite.settings", "mysite.wsgi:application")
    assert where(p, "settings").startswith("manage.py:") and where(p, "settings").endswith(" default")
    assert where(p, "wsgi").startswith("mysite/settings.py:") and "WSGI_APPLICATION" in where(p, "wsgi")
    assert p.requirements.install == "requirements.txt" and p.celery_app is None and p.python == ">=3.10"   # what its Django needs
    assert [f.what for f in p.findings][:4] == ["root", "settings", "wsgi", "requirements"]


def test_wagtail_start_takes_its_production_module_and_follows_the_star_import(generated):
    p = inspect_tree(*listing(generated["wagtail"]), app())
    assert p.settings == "wsite.settings.production"
    assert where(p, "settings") == "manage.py:9 default wsite.settings.dev; production module found " \
                                   "(wsite/settings/production.py)"
    # WSGI_APPLICATION is in base.py, which production.py star-imports
    assert p.wsgi == "wsite.wsgi:application" and where(p, "wsgi").startswith("wsite/settings/base.py:")
    assert p.requirements.install == "requirements.txt"
    assert "wagtail" in p.requirements.files[0][1]


def test_a_settings_package_made_of_startprojects_settings(generated, tmp_path):
    """settings.py moved into settings/base.py, with __init__ star-importing it and a prod.py beside."""
    tree = tmp_path / "p"
    shutil.copytree(generated["django"], tree)
    pkg = tree / "mysite" / "settings"
    pkg.mkdir()
    (tree / "mysite" / "settings.py").rename(pkg / "base.py")
    (pkg / "__init__.py").write_text("from .base import *  # noqa\n")
    (pkg / "prod.py").write_text("from mysite.settings.base import *\nDEBUG = False\n")
    (tree / "requirements.txt").write_text("Django>=5.2,<6\n")
    p = inspect_tree(*listing(tree), app())
    assert p.settings == "mysite.settings.prod" and "production module found (mysite/settings/prod.py)" in \
        where(p, "settings")
    assert p.wsgi == "mysite.wsgi:application" and where(p, "wsgi").startswith("mysite/settings/base.py:")
    # without a production module, the package itself (its __init__ star-imports base)
    (pkg / "prod.py").unlink()
    p = inspect_tree(*listing(tree), app())
    assert p.settings == "mysite.settings" and where(p, "wsgi").startswith("mysite/settings/base.py:")


def test_roles_yaml_wins_over_every_detection(generated):
    a = app(django_settings="wsite.settings.dev", wsgi="wsite.asgi:app", requirements="requirements.txt",
            celery_app="wsite.tasks", release_command="python manage.py migrate", python=">=3.12")
    p = inspect_tree(*listing(generated["wagtail"]), a)
    assert (p.settings, p.wsgi, p.celery_app, p.release_command, p.python) == \
        ("wsite.settings.dev", "wsite.asgi:app", "wsite.tasks", "python manage.py migrate", ">=3.12")
    for what, key in [("settings", "django_settings"), ("wsgi", "wsgi"), ("requirements", "requirements"),
                      ("celery_app", "celery_app"), ("release_command", "release_command"), ("python", "python")]:
        assert where(p, what) == f"roles.yaml app.{key}"


def test_manage_py_in_src_and_the_venv_beside_it_is_ignored():
    tree = minimal(prefix="src")
    tree[".venv/lib/python3.12/site-packages/django/conf/project_template/manage.py"] = MANAGE.format(settings="x.y")
    tree["node_modules/pkg/manage.py"] = MANAGE.format(settings="x.y")
    p = inspect_tree(*hand(tree), app())
    assert (p.root, p.settings, p.wsgi) == ("src", "shop.settings", "shop.wsgi:application")
    assert where(p, "root") == "src/manage.py" and where(p, "settings").startswith("src/manage.py:6")
    assert p.path("shop/wsgi.py") == "src/shop/wsgi.py"


def test_the_settings_default_may_come_from_wsgi_py_and_wsgi_from_the_file_beside_the_settings():
    tree = minimal()
    tree["manage.py"] = "from django.core.management import execute_from_command_line\n"
    tree["shop/wsgi.py"] = "import os\nos.environ['DJANGO_SETTINGS_MODULE'] = 'shop.settings'\napplication = 1\n"
    tree["shop/settings.py"] = "DEBUG = False\n"
    p = inspect_tree(*hand(tree), app())
    assert p.settings == "shop.settings" and where(p, "settings") == "shop/wsgi.py:2 default"
    assert p.wsgi == "shop.wsgi:application" and where(p, "wsgi").startswith("shop/wsgi.py (no WSGI_APPLICATION")


def test_what_cannot_be_found_is_an_error_naming_the_file_and_the_key():
    with pytest.raises(InspectError, match="no manage.py in the commit"):
        inspect_tree(*hand({"requirements.txt": "Django\n", "venv/manage.py": MANAGE}), app())
    tree = minimal()
    tree["manage.py"] = "print('hello')\n"
    with pytest.raises(InspectError, match=r"manage.py: no DJANGO_SETTINGS_MODULE default.*app.django_settings"):
        inspect_tree(*hand(tree), app())
    tree = minimal()
    tree["manage.py"] = MANAGE.format(settings="shop.config")
    with pytest.raises(InspectError, match=r"manage.py:6: the settings module shop.config is not in the commit"):
        inspect_tree(*hand(tree), app())
    tree = minimal()
    tree["shop/settings.py"] = "DEBUG = True\n"
    del tree["shop/wsgi.py"]
    with pytest.raises(InspectError, match=r"shop/settings.py: no WSGI_APPLICATION.*set app.wsgi") as e:
        inspect_tree(*hand(tree), app())
    assert isinstance(e.value, DeployError)


def test_procfile_gives_release_and_celery_when_roles_yaml_does_not():
    procfile = ("# Heroku\nrelease: python manage.py migrate --noinput\n\nweb: gunicorn shop.wsgi --log-file -\n"
                "worker: celery --app=shop.worker worker -l info\n")
    p = inspect_tree(*hand(minimal(Procfile=procfile)), app())
    assert p.procfile == (("release", "python manage.py migrate --noinput"),
                          ("web", "gunicorn shop.wsgi --log-file -"), ("worker", "celery --app=shop.worker worker -l info"))
    assert p.release_command == "python manage.py migrate --noinput" and where(p, "release_command") == "Procfile release:"
    assert p.celery_app == "shop.worker" and where(p, "celery_app") == "Procfile worker: -A"
    assert p.process("web") == "gunicorn shop.wsgi --log-file -"
    assert [f.what for f in p.findings if f.what.startswith("procfile")] == \
        ["procfile release", "procfile web", "procfile worker"]
    assert parse_procfile("worker: celery -A proj worker\nnot a line\n") == (("worker", "celery -A proj worker"),)


def test_a_celery_module_of_the_project_package_wins_over_the_procfile():
    celery_py = "import os\nfrom celery import Celery\n\napp = Celery('shop')\napp.config_from_object('x')\n"
    tree = minimal(**{"shop/celery.py": celery_py, "Procfile": "worker: celery -A other worker\n"})
    p = inspect_tree(*hand(tree), app())
    assert p.celery_app == "shop" and where(p, "celery_app") == "shop/celery.py:4 Celery("
    tree = minimal(**{"shop/celery_app.py": "import celery\napp = celery.Celery('shop')\n"})
    assert inspect_tree(*hand(tree), app()).celery_app == "shop.celery_app"
    # the word Celery( in a comment or a string does not count
    tree = minimal(**{"shop/notes.py": "# Celery(\nX = 'Celery('\n"})
    assert inspect_tree(*hand(tree), app()).celery_app is None


def test_python_from_requires_python_python_version_and_runtime_txt_in_that_order():
    pyproject = '[project]\nname = "shop"\nrequires-python = ">= 3.12, <3.14"\n'
    tree = minimal(**{"pyproject.toml": pyproject, ".python-version": "3.11\n", "runtime.txt": "python-3.10.4\n"})
    p = inspect_tree(*hand(tree), app())
    assert p.python == ">=3.12,<3.14" and where(p, "python") == "pyproject.toml requires-python"
    del tree["pyproject.toml"]
    p = inspect_tree(*hand(tree), app())
    assert p.python == "==3.11.*" and where(p, "python") == ".python-version 3.11"
    del tree[".python-version"]
    p = inspect_tree(*hand(tree), app())
    assert p.python == "==3.10.*" and where(p, "python") == "runtime.txt python-3.10.4"
    tree["runtime.txt"] = "ruby-3.2\n"
    with pytest.raises(InspectError, match=r"runtime.txt: 'ruby-3.2' is not a Python version.*app.python"):
        inspect_tree(*hand(tree), app())
    assert [python_constraint(t) for t in ("3.12.1\n", "# pyenv\n3.13\n", "cpython-3.12.0", "system")] == \
        ["==3.12.*", "==3.13.*", "==3.12.*", None]


@pytest.mark.parametrize("line, python", [
    ("Django>=6.1,<6.2", ">=3.12"), ("django==6.0.1", ">=3.12"), ("Django>=5.2,<6", ">=3.10"),
    ("Django~=5.0", ">=3.10"), ("Django<5", None), ("Django", None), ("Django>=4.2,<5.1", None)])
def test_the_python_a_django_requirement_needs(line, python):
    from fabfile.project.runtime import python_for_django

    assert python_for_django(line) == python
