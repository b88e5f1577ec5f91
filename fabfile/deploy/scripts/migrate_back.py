"""Undo migrations back to the given targets, run in the current release (which has the files to undo).

argv[1] is a JSON list of [app, migration name or null (zero)].  Refuses, with exit 3 and
{"irreversible": [...], "undo": [...]}, when any migration to undo has an irreversible operation; otherwise
migrates each app back and prints {"undone": ["app.name", ...]}.
"""
import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402  (after setup)
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

targets = json.loads(sys.argv[1])
plan = MigrationExecutor(connection).migration_plan([(app, name) for app, name in targets])
undo, irreversible = [], []
for migration, backwards in plan:
    if backwards:
        undo.append(migration.app_label + "." + migration.name)
        for op in migration.operations:
            if not op.reversible:
                irreversible.append(migration.app_label + "." + migration.name + ": " + op.describe())
if irreversible:
    print(json.dumps({"irreversible": irreversible, "undo": undo}))
    sys.exit(3)
for app, name in targets:
    call_command("migrate", app, name or "zero", interactive=False, verbosity=1)
print(json.dumps({"undone": undo}))
