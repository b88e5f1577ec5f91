"""whipup: `fab -l` lists the tasks.

Tasks are thin: they load roles.yaml once, open one cloud session, and hand
both to the modules that do the work.
"""
from invoke import Collection

from .backup import tasks as backup_tasks
from .configure import tasks as configure_tasks
from .console import tasks as console_tasks
from .deploy import envtasks
from .deploy import tasks as deploy_tasks
from .project import tasks as project_tasks
from .provision import tasks as provision_tasks
from .sandbox import tasks as sandbox_tasks
from .recover import recover_task
from .tls import tasks as tls_tasks
from .whipup import whip_up_full_system

ns = Collection(
    provision_tasks.provision,
    provision_tasks.create_node,
    provision_tasks.status,
    provision_tasks.destroy,
    configure_tasks.configure,
    tls_tasks.certificate,
    whip_up_full_system,
    deploy_tasks.deploy,
    deploy_tasks.quick_update,
    deploy_tasks.rollback,
    deploy_tasks.releases,
    console_tasks.manage,
    console_tasks.logs,
    console_tasks.ssh,
    project_tasks.inspect,
    backup_tasks.backup,
    backup_tasks.backups,
    backup_tasks.restore,
    backup_tasks.snapshot,
    recover_task,
)
ns.add_collection(Collection.from_module(sandbox_tasks, name="sandbox"))
ns.add_collection(Collection("env", envtasks.show, envtasks.set_, envtasks.unset))
