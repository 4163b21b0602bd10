from __future__ import annotations

from django import forms

from nodes.forms import NodeChoiceField

GB = 1000**3
MAX_SIZES = [("", "Any size"), *((str(n * GB), f"Up to {n} GB") for n in (2, 4, 8, 16, 32, 64, 128))]


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    author = forms.CharField(
        required=False,
        max_length=100,
        initial="mlx-community",
        help_text='An organisation or user; "any" for everyone.',
    )
    max_size = forms.TypedChoiceField(
        required=False, choices=MAX_SIZES, coerce=int, empty_value=None, label="Maximum size"
    )
    sort = forms.ChoiceField(
        required=False,
        initial="downloads",
        choices=[("downloads", "Most downloaded"), ("likes", "Most liked"), ("recent", "Recently updated")],
    )

    def clean_author(self) -> str:
        author = (self.cleaned_data.get("author") or "").strip()
        return "" if author.lower() in ("any", "*") else author


class DownloadForm(forms.Form):
    """A download for one node (blank: this one); the repo id is checked by the service."""

    repo_id = forms.CharField(required=False, max_length=200)
    node = NodeChoiceField()
