"""fabfile/__init__.py imports only the named tasks' modules: every task defined anywhere must be in TASKS."""
import importlib
import pkgutil

from invoke import Task

import fabfile


def test_every_task_in_the_package_is_registered():
    registered = {(module.lstrip("."), attr) for module, attr in fabfile.TASKS.values()}
    found = set()
    for info in pkgutil.walk_packages(fabfile.__path__, "fabfile."):
        if ".scripts." in info.name or info.name.startswith("fabfile.sandbox"):
            continue   # remote scripts; the sandbox's tasks are the `sandbox` collection
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, Task) and value.__module__ == info.name and attr != "__all__":
                found.add((info.name.removeprefix("fabfile."), attr))
    missing = sorted(found - registered - {("deploy.envtasks", a) for a in ("show", "set_", "unset")})
    assert missing == []
