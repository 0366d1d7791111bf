"""Settings as pydantic models whose refusals are one-line ClulErrors, and the field types
and params shared by the methods.

A refusal names the model and the field: ``parameter scrub.lr must be a number > 0, got
'abc'``. Values may arrive as CLI text: pydantic's lax mode reads ``"0.01"``, ``"5"``,
``"5.0"`` and ``"yes"``; ``Int`` also reads a whole number as Python writes floats
(``"1e3"``, ``"5."``) and ``Bool`` blanks around the word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo

from ..errors import ClulError
from ..optim import OPTIMIZERS, make_optimizer

if TYPE_CHECKING:
    import torch


def _number_text(value: Any) -> Any:
    """Text read as Python reads a number ('1e3' and '5.' -> float, which pydantic takes
    for an int when whole); other values and other text as they are."""
    if isinstance(value, str):
        for read in (int, float):
            try:
                return read(value)
            except ValueError:
                pass
    return value


def _strip_text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Int = Annotated[int, BeforeValidator(_number_text)]
Bool = Annotated[bool, BeforeValidator(_strip_text)]
NonNegInt = Annotated[Int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
BatchSize = Annotated[Int, Field(ge=1)]
Optimizer = Literal[OPTIMIZERS]

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def describe(field: FieldInfo) -> str | None:
    """What a field takes, e.g. ``a number in [0, 1]``; None for a compound type."""
    ann = field.annotation
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(ann))
    kind = _KINDS.get(ann)
    if kind is None:
        return None
    b = {k: v for m in field.metadata for k in ("gt", "ge", "lt", "le")
         if (v := getattr(m, k, None)) is not None}
    if ("gt" in b or "ge" in b) and ("lt" in b or "le" in b):
        lo = f"({b['gt']:g}" if "gt" in b else f"[{b['ge']:g}"
        hi = f"{b['lt']:g})" if "lt" in b else f"{b['le']:g}]"
        return f"{kind} in {lo}, {hi}"
    for k, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if k in b:
            return f"{kind} {op} {b[k]:g}"
    return kind


def refusal(cls: type[BaseModel], error: ValidationError, data: Any, name: str,
            owner: str) -> str:
    """One line for a validation error of ``cls`` on ``data``: the unknown keys, or the first
    bad field with the value as given."""
    errors = error.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return (f"unknown parameter(s) {unknown} for {owner} "
                f"(known: {', '.join(sorted(cls.model_fields))})")
    e = errors[0]
    loc = e["loc"]
    key = ".".join(str(part) for part in (name, *loc))
    field = cls.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    given = data.get(loc[0], e["input"]) if isinstance(data, dict) else e["input"]
    want = describe(field) if field is not None else None
    if want is not None:
        return f"parameter {key} must be {want}, got {given!r}"
    msg = e["msg"][:1].lower() + e["msg"][1:]
    return f"parameter {key}: {msg}, got {given!r}"


class Settings(BaseModel):
    """A pydantic model that refuses unknown keys and bad values with one-line ClulErrors.

    Refusals name the model by ``label`` (its class name when empty), or by the ``name``
    and ``owner`` of the validation context, as :meth:`parse` passes them.
    """

    model_config = ConfigDict(extra="forbid")
    label: ClassVar[str] = ""

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_refusal(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        try:
            return handler(data)
        except ValidationError as e:
            ctx = info.context or {}
            name = ctx.get("name") or cls.label or cls.__name__
            owner = ctx.get("owner") or f"'{name}'"
            raise ClulError(refusal(cls, e, data, name, owner)) from None

    @classmethod
    def parse(cls, values: dict[str, Any], name: str, owner: str) -> Self:
        """Validate ``values``; a refusal calls the model ``name`` and its owner ``owner``."""
        return cls.model_validate(values, context={"name": name, "owner": owner})


class MethodParams(Settings):
    """Fields every method has. ``seed`` drives every random choice of the method."""

    seed: Int = 0


class OptimFields(Settings):
    """Epochs, batch size and optimiser: shared by the training recipe and the gradient
    methods' params, which redeclare a field to change its default."""

    epochs: NonNegInt = 5
    lr: Positive = 1e-3
    batch_size: BatchSize = 64
    optimizer: Optimizer = "adam"
    momentum: float = 0.9

    def optimizer_for(self, params, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        return make_optimizer(params, self.optimizer, self.lr, self.momentum, weight_decay)


class OptimParams(OptimFields, MethodParams):
    """The params of a gradient-based method: seed first, then the optimisation fields."""
