"""whipup: `fab -l` lists the tasks.

Tasks are thin: they load roles.yaml once, open one cloud session, and hand
both to the modules that do the work.
"""
from invoke import Collection

from .provision import tasks as provision_tasks
from .sandbox import tasks as sandbox_tasks

ns = Collection(
    provision_tasks.provision,
    provision_tasks.create_node,
    provision_tasks.status,
    provision_tasks.destroy,
)
ns.add_collection(Collection.from_module(sandbox_tasks, name="sandbox"))
