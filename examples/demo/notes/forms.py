from django import forms

from .models import Note


class NoteForm(forms.ModelForm):
    text = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "Write a note", "autofocus": True}),
    )

    class Meta:
        model = Note
        fields = ["text"]
