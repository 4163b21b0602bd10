"""The model folders an administrator allows on the Models page: the form that checks one, and
the writes (each recorded in the audit trail). Where they count: library.local.model_folder_roots."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.core.exceptions import PermissionDenied

from accounts.models import User
from audit.models import AuditKind
from audit.services import audit_record
from library.models import ModelFolder
from nodes.selectors import this_node_id


class ModelFolderForm(forms.Form):
    path = forms.CharField(
        max_length=500,
        label="Folder",
        help_text="An absolute path on this machine, holding model folders (or a model itself).",
    )

    def clean_path(self) -> str:
        typed = self.cleaned_data["path"].strip()
        if not typed.startswith("/"):
            raise forms.ValidationError("Give an absolute path, starting with /.")
        try:
            folder = Path(typed).resolve()
            is_dir = folder.is_dir()
        except (OSError, RuntimeError, ValueError):
            raise forms.ValidationError("That path cannot be read on this machine.") from None
        if not is_dir:
            raise forms.ValidationError(f"There is no folder at {typed} on this machine.")
        if folder == Path(folder.anchor):
            raise forms.ValidationError("Not the whole disk: name the folder that holds the models.")
        if ModelFolder.objects.filter(node_id=this_node_id(), path=str(folder)).exists():
            raise forms.ValidationError(f"{folder} is allowed already.")
        return str(folder)


def model_folder_add(*, path: str, by: User) -> ModelFolder:
    """Allow `path` (checked by ModelFolderForm) on this node; administrators only."""
    if not by.is_admin:
        raise PermissionDenied
    folder = ModelFolder.objects.create(path=path, added_by=by)
    audit_record(kind=AuditKind.MODEL, action="allow folder", subject=path, by=by)
    return folder


def model_folder_remove(*, folder: ModelFolder, by: User) -> None:
    """Allow it no more: profiles already pointing there keep their model, new ones may not."""
    if not by.is_admin:
        raise PermissionDenied
    folder.delete()
    audit_record(kind=AuditKind.MODEL, action="disallow folder", subject=folder.path, by=by)
