"""Request bodies of the service derived from the data contract (:mod:`features.contract`).

``EventIn`` (``POST /events``) and ``UserIn`` (``PUT /users/{id}``) are generated from the contract's
fields, so the OpenAPI document shows the constraints batch ingestion enforces: required fields,
string lengths, number ranges (the users' age range is the configured one,
:func:`features.contract.age_range`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from features.contract import EVENT_FIELDS, user_fields
from features.contract import Field as ContractField

_TYPES: dict[str, Any] = {"id": str, "string": str, "enum": str, "float": float, "int": int, "bool": bool,
                          # Strict: pydantic would otherwise turn numbers into datetimes, guessing their
                          # unit (epoch numbers need ingest.timestamp_unit: features.ingest.eventtime)
                          "date": str, "timestamp": StrictStr | StrictInt | StrictFloat}


def _pydantic_field(spec: ContractField) -> tuple[Any, Any]:
    """(annotation, pydantic Field) of one contract field."""
    kind = _TYPES[spec.kind]
    limits: dict[str, Any] = {}
    if spec.is_string:
        limits = {"min_length": 1 if spec.required else None, "max_length": spec.max_length}
    elif spec.kind in ("float", "int"):
        limits = {"ge": spec.low, "le": spec.high}
    limits = {k: v for k, v in limits.items() if v is not None}
    doc = spec.doc or None
    if spec.values:
        known = ", ".join(spec.values)
        doc = f"{doc + '; ' if doc else ''}known values: {known}"
    if spec.required:
        return kind, Field(description=doc, **limits)
    return kind | None, Field(default=None, description=doc, **limits)


class _IgnoreExtra(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ForbidExtra(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _model(name: str, doc: str, fields: dict[str, ContractField], base: type[BaseModel],
           **extra: tuple[Any, Any]) -> type[BaseModel]:
    definitions: dict[str, Any] = {n: _pydantic_field(f) for n, f in fields.items()} | extra
    model: type[BaseModel] = create_model(name, __base__=base, __module__=__name__, __doc__=doc,
                                          **definitions)
    return model


if TYPE_CHECKING:  # the checkers see plain models; the service gets the generated ones
    EventIn = BaseModel
    UserIn = BaseModel
else:
    EventIn = _model("EventIn", "One event of the data contract (unknown extra fields are ignored).",
                     EVENT_FIELDS, _IgnoreExtra)
    UserIn = _model("UserIn", "CRM attributes of the users contract; absent keys keep their stored value.",
                    {n: f for n, f in user_fields().items() if n != "user_id"}, _ForbidExtra,
                    # not a CRM attribute: the reason a deleted user is registered again (the ledger keeps it)
                    reconsent_reason=(str | None, Field(
                        default=None, min_length=1, max_length=500,
                        description="with consent true: registers a deleted user again (admin scope; "
                                    "recorded in the forget ledger)")))
