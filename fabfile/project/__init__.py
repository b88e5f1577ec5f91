"""Inspection: what a Django project is, read from its files at the commit to deploy (nothing run).

`detect.inspect_tree(files, read, app)` finds where manage.py lives, the settings module, the WSGI
application, the dependency source (`deps`), the Procfile, the Celery app and the Python version the
project asks for, each with where it was found; roles.yaml's `app` keys win over every detection.
`table` renders it for `fab inspect`; `facts` reads what Django itself says, run in a release
(`fabfile/deploy/scripts/django_facts.py`).
"""
