import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from .forms import NoteForm
from .models import Note

logger = logging.getLogger(__name__)

PAGE_SIZE = 100


def _render_index(request, form, status=200):
    context = {
        "notes": Note.objects.all()[:PAGE_SIZE],
        "form": form,
        "release": settings.WHIPUP_RELEASE,
    }
    return render(request, "notes/index.html", context, status=status)


@require_GET
def index(request):
    return _render_index(request, NoteForm())


@require_POST
def add_note(request):
    form = NoteForm(request.POST)
    if not form.is_valid():
        return _render_index(request, form, status=400)
    form.save()
    return redirect("index")


@never_cache
@require_GET
def health(request):
    """200 once the database answers a query, 503 otherwise."""
    body = {"status": "ok", "db": "ok", "release": settings.WHIPUP_RELEASE}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health check: database unavailable: %s", exc)
        body.update(status="error", db="error")
        return JsonResponse(body, status=503)
    return JsonResponse(body)
