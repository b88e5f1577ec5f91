import logging

from demo.celery import app

from .models import Note

logger = logging.getLogger(__name__)


@app.task
def add_note(text):
    """Create a Note; returns its id."""
    note = Note.objects.create(text=text)
    logger.info("note %s added by a worker", note.pk)
    return note.pk
