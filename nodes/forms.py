"""Choosing a node in a form."""

from __future__ import annotations

from typing import Any

from django import forms

from core.formatting import this_machine
from nodes.models import Node
from nodes.selectors import this_node


class NodeChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A node by its name (what the select posts and the API sends); blank means this node."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Node.objects.order_by("name"),
            to_field_name="name",
            required=False,
            empty_label=None,
            label="Node",
            error_messages={"invalid_choice": "There is no node with that name. Pick one of the nodes listed."},
            **kwargs,
        )

    def label_from_instance(self, obj: Node) -> str:
        return f"{obj.name} ({this_machine()})" if obj.is_local else obj.name

    def clean(self, value: Any) -> Node:
        return super().clean(value) or this_node()
