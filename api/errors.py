"""One JSON shape for every refusal: `{"detail": "...", "field": "...", "errors": {...}}`.

`detail` is the sentence the pages would show; `field` names the input at fault when there is one;
`errors` holds every field's messages when a form refused the body.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from ninja import Schema
from ninja.responses import codes_4xx

ERROR_CODES = codes_4xx


class Error(Schema):
    detail: str
    field: str | None = None
    errors: dict[str, list[str]] | None = None


class ApiError(Exception):
    """A refusal with its status: raised by endpoints, answered by the API's handler."""

    def __init__(
        self, status: int, detail: str, *, field: str | None = None, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "field": self.field, "errors": self.errors}


def form_error(form: forms.BaseForm) -> ApiError:
    """400 naming the first field at fault (`__all__` errors have no field) with all messages."""
    errors = {name: [str(message) for message in messages] for name, messages in form.errors.items()}
    first = next(iter(errors))
    field = None if first == NON_FIELD_ERRORS else first
    return ApiError(400, errors[first][0], field=field, errors=errors)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"No such {what}.")
