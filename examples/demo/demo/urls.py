from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("notes/", views.add_note, name="add-note"),
    path("health", views.health, name="health"),
]
