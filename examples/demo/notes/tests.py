import io
import os
import tempfile
from unittest import mock

from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import Client, SimpleTestCase, TestCase, override_settings
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerError

from demo.celery import app as celery_app
from demo.env import load_env_file, parse_env_file

from .models import Note
from .tasks import add_note


class IndexPageTests(TestCase):
    def test_lists_rows_and_uses_the_stylesheet(self):
        Note.objects.create(text="first note")
        Note.objects.create(text="second note")
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "notes/index.html")
        self.assertContains(response, "first note")
        self.assertContains(response, "second note")
        self.assertContains(response, 'href="/static/notes/site.css"')

    def test_empty_list(self):
        self.assertContains(self.client.get("/"), "No notes yet.")

    @override_settings(WHIPUP_RELEASE="20260101-abc123")
    def test_footer_shows_release(self):
        self.assertContains(self.client.get("/"), "20260101-abc123")


class AddNoteTests(TestCase):
    def test_post_adds_a_row_and_redirects(self):
        response = self.client.post("/notes/", {"text": "  hello  "})
        self.assertRedirects(response, reverse("index"))
        self.assertEqual(list(Note.objects.values_list("text", flat=True)), ["hello"])

    def test_blank_text_is_rejected(self):
        response = self.client.post("/notes/", {"text": "   "})
        self.assertEqual(response.status_code, 400)
        self.assertFalse(Note.objects.exists())

    def test_get_is_not_allowed(self):
        self.assertEqual(self.client.get("/notes/").status_code, 405)

    def test_post_without_csrf_token_is_forbidden(self):
        client = Client(enforce_csrf_checks=True)
        response = client.post("/notes/", {"text": "sneaky"})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Note.objects.exists())

    def test_post_with_csrf_token_from_the_page(self):
        client = Client(enforce_csrf_checks=True)
        page = client.get("/")
        token = page.context["csrf_token"]
        response = client.post("/notes/", {"text": "legit", "csrfmiddlewaretoken": str(token)})
        self.assertEqual(response.status_code, 302)
        self.assertTrue(Note.objects.filter(text="legit").exists())


@override_settings(WHIPUP_RELEASE="rel-7")
class HealthTests(TestCase):
    def test_ok_with_database(self):
        response = self.client.get("/health")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok", "db": "ok", "release": "rel-7"})
        self.assertIn("no-cache", response["Cache-Control"])

    def test_503_when_database_is_broken(self):
        with mock.patch("notes.views.connection.cursor", side_effect=OperationalError("down")):
            with self.assertLogs("notes.views", "WARNING"):
                response = self.client.get("/health")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json(), {"status": "error", "db": "error", "release": "rel-7"})


class EagerCelery:
    """Run tasks in-process, as CELERY_TASK_ALWAYS_EAGER=true does."""

    def setUp(self):
        super().setUp()
        conf = celery_app.conf
        saved = conf.task_always_eager, conf.task_eager_propagates
        conf.task_always_eager = conf.task_eager_propagates = True

        def restore():
            conf.task_always_eager, conf.task_eager_propagates = saved

        self.addCleanup(restore)


class TaskTests(EagerCelery, TestCase):
    def test_add_note_task_creates_a_note(self):
        result = add_note.delay("from celery")
        self.assertTrue(result.successful())
        note = Note.objects.get()
        self.assertEqual(note.text, "from celery")
        self.assertEqual(result.get(), note.pk)

    def test_enqueue_note_command_runs_the_task(self):
        out = io.StringIO()
        call_command("enqueue_note", "from the command line", stdout=out)
        self.assertIn("queued add_note task", out.getvalue())
        self.assertTrue(Note.objects.filter(text="from the command line").exists())


class EnqueueCommandBrokerTests(SimpleTestCase):
    def test_sends_through_the_broker(self):
        with mock.patch.object(add_note, "delay") as delay:
            delay.return_value.id = "abc"
            out = io.StringIO()
            call_command("enqueue_note", "queued", stdout=out)
        delay.assert_called_once_with("queued")
        self.assertEqual(out.getvalue().strip(), "queued add_note task abc")

    def test_unreachable_broker_is_a_command_error(self):
        with mock.patch.object(add_note, "delay", side_effect=BrokerError("refused")):
            with self.assertRaisesMessage(CommandError, "could not reach the broker"):
                call_command("enqueue_note", "lost")


class EnvFileTests(SimpleTestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".env")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_parses_key_value_lines(self):
        path = self.write(
            "# comment\n"
            "\n"
            "DJANGO_DEBUG=false\n"
            "export DB_NAME=demo\n"
            "DB_PASSWORD='p#ss=word'\n"
            'WHIPUP_RELEASE="20260101 x"\n'
            "EMPTY=\n"
        )
        self.assertEqual(
            parse_env_file(path),
            {
                "DJANGO_DEBUG": "false",
                "DB_NAME": "demo",
                "DB_PASSWORD": "p#ss=word",
                "WHIPUP_RELEASE": "20260101 x",
                "EMPTY": "",
            },
        )

    def test_environment_wins_over_the_file(self):
        path = self.write("A=from-file\nB=from-file\n")
        environ = {"A": "from-env"}
        load_env_file(path, environ)
        self.assertEqual(environ, {"A": "from-env", "B": "from-file"})

    def test_rejects_malformed_lines(self):
        path = self.write("OK=1\nnot a setting\n")
        with self.assertRaisesMessage(ImproperlyConfigured, ":2: expected KEY=VALUE"):
            parse_env_file(path)
