"""PURE: `inspect_tree`: what a Django project is, from its files at the commit (`files`, `read`).

Each value comes with where it was found (`Finding`); a value set in roles.yaml's `app` section wins and is
shown as `roles.yaml app.<key>`. What a deploy cannot do without (manage.py, the settings module, the WSGI
application, a dependency source) raises `InspectError` naming the file and the roles.yaml key to set.
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..appconfig import AppConfig
from . import pysource, runtime
from .deps import find_dependencies
from .errors import InspectError
from .model import Finding, Project
from .tree import counted, is_package, join, module_file

PRODUCTION_MODULES = ("production", "prod")
Reader = Callable[[str], "str | None"]


def find_root(files: set[str]) -> tuple[str, str]:
    """(the directory of the shallowest manage.py, where): "" for the app's top directory."""
    found = sorted((f.count("/"), f) for f in files if (f == "manage.py" or f.endswith("/manage.py")) and counted(f))
    if not found:
        raise InspectError("no manage.py in the commit (looked in every directory but virtualenvs and "
                           "node_modules): whipup deploys a Django project; is app.repo its directory?")
    depth, path = found[0]
    others = [p for d, p in found[1:] if d == depth]
    root = path.rsplit("/", 1)[0] if "/" in path else ""
    return root, path + (f" (shallowest; also {', '.join(others)})" if others else "")


def _one_below(files: set[str], root: str, name: str) -> list[str]:
    """`name` in each directory directly under the Django root (`mysite/wsgi.py`), sorted."""
    prefix = join(root, "")
    return sorted(f for f in files if f.startswith(prefix) and f[len(prefix):].count("/") == 1
                  and f.endswith(f"/{name}"))


def _default(files: set[str], read: Reader, root: str) -> tuple[str, str] | None:
    """(module, "file:line") of the DJANGO_SETTINGS_MODULE default in manage.py, else a wsgi.py/asgi.py."""
    for path in [join(root, "manage.py")] + _one_below(files, root, "wsgi.py") + _one_below(files, root, "asgi.py"):
        text = read(path)
        found = pysource.settings_default(text) if text is not None else None
        if found:
            return found[0], f"{path}:{found[1]}"
    return None


def _production(files: set[str], root: str, module: str) -> str | None:
    """The production module of a settings package that `module` is (or is in), if it has one."""
    parts = module.split(".")
    if is_package(files, root, module):
        package = module
    elif len(parts) >= 2 and is_package(files, root, ".".join(parts[:-1])) and parts[-2] == "settings":
        package = ".".join(parts[:-1])
    else:
        return None
    for name in PRODUCTION_MODULES:
        candidate = f"{package}.{name}"
        if module_file(files, root, candidate) is not None:
            return candidate
    return None


def find_settings(files: set[str], read: Reader, root: str, app: AppConfig) -> tuple[str, str]:
    if app.django_settings:
        return app.django_settings, "roles.yaml app.django_settings"
    default = _default(files, read, root)
    if default is None:
        raise InspectError(f"{join(root, 'manage.py')}: no DJANGO_SETTINGS_MODULE default "
                           f"(os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", ...)) in it or in a wsgi.py beside "
                           f"the project; set app.django_settings in roles.yaml")
    module, where = default
    if module_file(files, root, module) is None:
        raise InspectError(f"{where}: the settings module {module} is not in the commit "
                           f"(no {join(root, module.replace('.', '/'))}.py); set app.django_settings in roles.yaml")
    production = _production(files, root, module)
    if production and production != module:
        return production, f"{where} default {module}; production module found " \
                           f"({module_file(files, root, production)})"
    return module, f"{where} default"


def setting_value(files: set[str], read: Reader, root: str, module: str, name: str,
                  seen: frozenset[str] = frozenset()) -> tuple[str | None, str] | None:
    """(value, "file:line") of `name = "constant"` as the module leaves it, following `from X import *`
    into the project's own modules; (None, where) when it is set to something not a constant."""
    path = module_file(files, root, module)
    if path is None or module in seen:
        return None
    text = read(path)
    result = None
    for st in pysource.statements(text or ""):
        if st.kind == "star":
            inner = setting_value(files, read, root, pysource.absolute(st.name, module, path.endswith("__init__.py")),
                                  name, seen | {module})
            result = inner or result
        elif st.name == name:
            result = (st.value, f"{path}:{st.line}")
    return result


def find_wsgi(files: set[str], read: Reader, root: str, settings: str, app: AppConfig) -> tuple[str, str]:
    if app.wsgi:
        return app.wsgi, "roles.yaml app.wsgi"
    found = setting_value(files, read, root, settings, "WSGI_APPLICATION")
    if found and found[0] and "." in found[0]:
        module, _, attr = found[0].rpartition(".")
        return f"{module}:{attr}", f"{found[1]} WSGI_APPLICATION"
    parts = settings.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i] + ["wsgi"])
        path = module_file(files, root, module)
        if path is not None:
            why = "WSGI_APPLICATION is not a constant" if found else "no WSGI_APPLICATION"
            return f"{module}:application", f"{path} ({why}; the wsgi.py beside the settings)"
    raise InspectError(f"{module_file(files, root, settings) or settings}: no WSGI_APPLICATION (nor in the modules "
                       f"it star-imports) and no wsgi.py beside it; set app.wsgi in roles.yaml (module:callable)")


def inspect_tree(files: Sequence[str], read: Reader, app: AppConfig) -> Project:
    """What the project at the commit is; `files` are the paths of the app's directory, `read(path)` a file's
    text (None when it is not there)."""
    tree = set(files)
    root, root_where = find_root(tree)
    settings, settings_where = find_settings(tree, read, root, app)
    wsgi, wsgi_where = find_wsgi(tree, read, root, settings, app)
    directories = ("", root) if root else ("",)
    deps, deps_where = find_dependencies(tree, read, app.requirements, directories)
    procfile, procfile_where = runtime.find_procfile(tree, read, directories)
    release, release_where = runtime.find_release(procfile, procfile_where, app)
    celery, celery_where = runtime.find_celery(tree, read, root, settings, procfile, procfile_where, app)
    python, python_where = runtime.find_python(tree, read, directories, app)
    if python is None:
        python, python_where = runtime.infer_python(deps)
    findings = [Finding("root", root or ".", root_where),
                Finding("settings", settings, settings_where),
                Finding("wsgi", wsgi, wsgi_where),
                Finding("requirements", runtime.describe_deps(deps), deps_where)]
    findings += [Finding(f"procfile {kind}", command, procfile_where) for kind, command in procfile]
    findings += [Finding("release_command", release or "-", release_where),
                 Finding("celery_app", celery or "-", celery_where),
                 Finding("python", python or "-", python_where)]
    return Project(root, settings, wsgi, deps, procfile, release, celery, python, tuple(findings))
