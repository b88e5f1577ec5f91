from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError

from notes.tasks import add_note


class Command(BaseCommand):
    help = "Send a notes.tasks.add_note task through the Celery broker."

    def add_arguments(self, parser):
        parser.add_argument("text", help="the note's text")

    def handle(self, *args, text, **options):
        try:
            result = add_note.delay(text)
        except OperationalError as exc:
            raise CommandError(f"could not reach the broker: {exc}") from exc
        self.stdout.write(f"queued add_note task {result.id}")
