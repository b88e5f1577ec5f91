"""Django projects made at test time by the real tools (`django-admin startproject`, `manage.py startapp`,
`wagtail start`), as a developer starts them, committed as their own repositories; never edited for whipup.

What a developer adds to a new project to have something to deploy is added the way they add it: new files
(an app's model, view, template and static file; requirements files; a Procfile; a Celery module; a
pyproject.toml) and the two registration lines a new app takes (INSTALLED_APPS, one include in urls.py).
Nothing here reads WHIPUP_*, DATABASE_URL or any name of whipup's: the settings stay the generated ones.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .demo import git

BIN = Path(sys.executable).parent

SHOP_MODELS = '''from django.db import models


class Item(models.Model):
    label = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
'''

SHOP_VIEWS = '''import os

from django.http import HttpResponse
from django.shortcuts import render

from .models import Item


def home(request):
    return render(request, "shop/home.html", {"items": Item.objects.order_by("-id")[:5]})


def env(request):
    """A configuration value, as the running app sees it."""
    return HttpResponse(os.environ.get(request.GET["name"], "(unset)"))
'''

SHOP_TEMPLATE = '''{% load static %}<!doctype html>
<html><head><title>shop</title><link rel="stylesheet" href="{% static 'shop/site.css' %}"></head>
<body><h1>shop</h1><ul>{% for i in items %}<li>{{ i.label }}</li>{% endfor %}</ul></body></html>
'''

SHOP_URLS = '''from django.urls import path

from . import views

urlpatterns = [path("", views.home, name="home"), path("env/", views.env, name="env")]
'''

CELERY_APP = '''import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{name}.settings")
app = Celery("{name}", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
'''

SHOP_TASKS = '''from {name}.celery import app

from .models import Item


@app.task
def record(label):
    Item.objects.create(label=label)
'''

QUEUE_VIEWS = SHOP_VIEWS + '''

def queue(request):
    from .tasks import record

    record.delay(request.GET["label"])
    return HttpResponse("queued\\n")
'''

QUEUE_URLS = '''from django.urls import path

from . import views

urlpatterns = [path("", views.home, name="home"), path("env/", views.env, name="env"),
               path("queue/", views.queue, name="queue")]
'''


def run(*argv: str, cwd: Path) -> None:
    subprocess.run(list(argv), cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


def commit(repo: Path, message: str) -> Path:
    (repo / ".gitignore").write_text("db.sqlite3\n__pycache__/\n")     # what any project keeps out of git
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return repo


def startproject(repo: Path, name: str) -> None:
    repo.mkdir(parents=True)
    run(str(BIN / "django-admin"), "startproject", name, ".", cwd=repo)


def add_shop(repo: Path, name: str, views: str = SHOP_VIEWS, urls: str = SHOP_URLS) -> None:
    """`manage.py startapp shop`, its model, view, template and static file, and its two registration lines."""
    run(sys.executable, "manage.py", "startapp", "shop", cwd=repo)
    shop = repo / "shop"
    (shop / "models.py").write_text(SHOP_MODELS)
    (shop / "views.py").write_text(views)
    (shop / "urls.py").write_text(urls)
    (shop / "templates" / "shop").mkdir(parents=True)
    (shop / "templates" / "shop" / "home.html").write_text(SHOP_TEMPLATE)
    (shop / "static" / "shop").mkdir(parents=True)
    (shop / "static" / "shop" / "site.css").write_text("body { font-family: sans-serif; }\n")
    settings = repo / name / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS += ["shop"]\n')
    urls_py = repo / name / "urls.py"
    text = urls_py.read_text().replace("from django.urls import path", "from django.urls import include, path")
    urls_py.write_text(text + '\nurlpatterns += [path("", include("shop.urls"))]\n')
    env = {"DJANGO_SETTINGS_MODULE": f"{name}.settings", "PATH": str(BIN) + ":/usr/bin:/bin"}
    subprocess.run([sys.executable, "manage.py", "makemigrations", "shop"], cwd=repo, env=env, check=True,
                   capture_output=True, timeout=300)


def plain(repo: Path) -> Path:
    """(a) django-admin startproject (Django 5.2) with one app holding a model and a static file."""
    startproject(repo, "mysite")
    add_shop(repo, "mysite")
    (repo / "requirements.txt").write_text("Django>=5.2,<6\n")
    return commit(repo, "startproject mysite, startapp shop")


def wagtail(repo: Path) -> Path:
    """(b) wagtail start, as generated (its production settings, its requirements.txt, its Dockerfile)."""
    repo.mkdir(parents=True)
    run(str(BIN / "wagtail"), "start", "wagsite", str(repo), cwd=repo.parent)
    return commit(repo, "wagtail start wagsite")


def split(repo: Path) -> Path:
    """(c) requirements/base.txt + requirements/production.txt (-r) and a Procfile with release: and web:."""
    startproject(repo, "splitsite")
    add_shop(repo, "splitsite")
    (repo / "requirements").mkdir()
    (repo / "requirements" / "base.txt").write_text("Django>=5.2,<6\n")
    (repo / "requirements" / "production.txt").write_text("-r base.txt\ngunicorn>=22\npsycopg[binary]>=3.1\n")
    (repo / "Procfile").write_text("release: python manage.py createcachetable\n"
                                   "web: gunicorn splitsite.wsgi --log-file -\n")
    return commit(repo, "split requirements and a Procfile")


def pyproject(repo: Path) -> Path:
    """(d) a pyproject-only project on Django 6 (Python 3.12 or later)."""
    startproject(repo, "pysite")
    add_shop(repo, "pysite")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "pysite"\nversion = "0.1.0"\nrequires-python = ">=3.12"\n'
        'dependencies = ["django>=6.0,<6.1"]\n')
    return commit(repo, "startproject pysite, pyproject.toml")


def celery(repo: Path) -> Path:
    """(e) a Celery app: a task queued from a view, completed on the worker."""
    startproject(repo, "celsite")
    (repo / "celsite" / "celery.py").write_text(CELERY_APP.format(name="celsite"))
    add_shop(repo, "celsite", views=QUEUE_VIEWS, urls=QUEUE_URLS)
    (repo / "shop" / "tasks.py").write_text(SHOP_TASKS.format(name="celsite"))
    (repo / "requirements.txt").write_text("Django>=5.2,<6\ncelery[redis]>=5.3,<6\n")
    return commit(repo, "startproject celsite with a Celery app")
