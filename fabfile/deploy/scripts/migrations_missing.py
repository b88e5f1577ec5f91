"""Which migrations the database has applied that this release does not have, run in the target release.

Prints one JSON line: {"missing": [[app, name], ...], "leaves": {app: the release's last migration}}.
"""
import json

import django

django.setup()

from django.db import connection  # noqa: E402  (after setup)
from django.db.migrations.loader import MigrationLoader  # noqa: E402

loader = MigrationLoader(connection, ignore_no_migrations=True)
missing = sorted(key for key in loader.applied_migrations if key not in loader.disk_migrations)
leaves = {}
for app, name in sorted(loader.graph.leaf_nodes()):
    leaves.setdefault(app, name)
print(json.dumps({"missing": [list(k) for k in missing], "leaves": leaves}))
