# Celery is not loaded when Django starts: the web workers never queue a task, and a gunicorn reload boots
# its new workers about twice as fast without it. Tasks bind to the app explicitly (`@app.task` in
# notes/tasks.py), so whatever queues one loads demo.celery then; `celery -A demo` finds demo.celery itself.
