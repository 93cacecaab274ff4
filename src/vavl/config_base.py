"""What every configuration section shares: strict, frozen, and numbers that are numbers."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, model_validator


def _accepts_bool(annotation: Any) -> bool:
    return annotation is bool or any(_accepts_bool(a) for a in get_args(annotation))


class _Strict(BaseModel):
    # protected_namespaces=(): fields such as model_dim are ours; pydantic before 2.10 warns
    # about the "model_" prefix on every command otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, values: Any) -> Any:
        """``epochs: true`` is a mistake, not 1 epoch (pydantic would take it as 1)."""
        if isinstance(values, dict):
            for name, value in values.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field and not _accepts_bool(field.annotation):
                    raise ValueError(f"{name} takes a number or a name, not {str(value).lower()}")
        return values
