"""whipup: `fab -l` lists the tasks.

Tasks are thin: they load roles.yaml once, open one cloud session, and hand
both to the modules that do the work.

Only the modules of the tasks named on the command line are imported (`fab configure` needs neither the
deploy engine nor the sandbox's controls): a no-op run's floor is mostly Python's imports. A command line
naming no task we know (`fab -l`, `fab --help`, a typo) loads them all, so invoke lists or names them.
"""
import sys

from invoke import Collection

# task (as typed) -> (module, attribute); "sandbox" and "env" are collections
TASKS = {
    "provision": (".provision.tasks", "provision"), "create-node": (".provision.tasks", "create_node"),
    "status": (".provision.tasks", "status"), "destroy": (".provision.tasks", "destroy"),
    "configure": (".configure.tasks", "configure"), "whip-up-full-system": (".whipup", "whip_up_full_system"),
    "deploy": (".deploy.tasks", "deploy"), "quick-update": (".deploy.tasks", "quick_update"),
    "rollback": (".deploy.tasks", "rollback"), "releases": (".deploy.tasks", "releases"),
    "manage": (".console.tasks", "manage"), "logs": (".console.tasks", "logs"), "ssh": (".console.tasks", "ssh"),
    "inspect": (".project.tasks", "inspect"), "certificate": (".tls.tasks", "certificate"),
    "backup": (".backup.tasks", "backup"), "backups": (".backup.tasks", "backups"),
    "restore": (".backup.tasks", "restore"), "snapshot": (".backup.tasks", "snapshot"),
    "recover": (".recover", "recover_task"), "receiver": (".monitor.tasks", "receiver"),
}
COLLECTIONS = ("sandbox", "env")


def requested(argv: list[str]) -> list[str] | None:
    """The tasks and collections `argv` (fab's command line) names, in the order of TASKS; None when it names
    none of them, or when this program is not fab (pytest, say: its arguments name no task)."""
    program = argv[0].replace("\\", "/").split("/") if argv else [""]
    if program[-1] not in ("fab", "fab.exe") and program[-2:] != ["fabric", "__main__.py"]:
        return None
    words = {w.split(".", 1)[0] if w.split(".", 1)[0] in COLLECTIONS else w for w in argv[1:]}
    named = [name for name in (*TASKS, *COLLECTIONS) if name in words]
    return named or None


def _load(name: str):
    import importlib

    if name == "sandbox":
        return Collection.from_module(importlib.import_module(".sandbox.tasks", __name__), name="sandbox")
    if name == "env":
        env = importlib.import_module(".deploy.envtasks", __name__)
        return Collection("env", env.show, env.set_, env.unset)
    module, attr = TASKS[name]
    return getattr(importlib.import_module(module, __name__), attr)


ns = Collection()
_named = requested(sys.argv)
for _name in _named or (*TASKS, *COLLECTIONS):
    _item = _load(_name)
    if isinstance(_item, Collection):
        ns.add_collection(_item)
    else:
        ns.add_task(_item)

if _named is not None:
    # a fab process is short: what the imports made lives to its end, so the collector need not look at it
    # again, neither during the run nor in the interpreter's last collection (~25 ms of a no-op configure)
    import gc

    gc.freeze()
