"""Model configurations: the named ones of SPEC.md section 4 and their validation."""
from __future__ import annotations

import dataclasses
import json
import numbers

from .init import INITS
from .s4d import DISCRETIZATIONS
from .validate import S4DInputError, json_object

ACTIVATIONS = ("relu", "identity")
READOUTS = ("last", "mean")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The S4D classifier of the paper: encoder -> n_layers x [S4D -> act -> Linear(H, H) -> act] -> decoder.

    H: channels (model width); P: complex modes per channel; dt is drawn per channel log-uniformly
    in [dt_min, dt_max]. Defaults are the paper's choices (SPEC.md section 4).
    """

    name: str = "custom"
    d_input: int = 1
    H: int = 4
    P: int = 2
    n_layers: int = 1
    n_classes: int = 10
    init: str = "legs"
    discretization: str = "zoh"
    dt_min: float = 0.001
    dt_max: float = 0.1
    use_D: bool = False
    activation: str = "relu"
    readout: str = "last"

    def __post_init__(self):
        for field in ("d_input", "H", "P", "n_layers", "n_classes"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise S4DInputError(f"config {self.name!r}: {field} must be a positive integer, got {v!r}")
        if self.init not in INITS:
            raise S4DInputError(f"config {self.name!r}: unknown init {self.init!r}; known: {', '.join(INITS)}")
        if self.discretization not in DISCRETIZATIONS:
            raise S4DInputError(
                f"config {self.name!r}: unknown discretization {self.discretization!r}; "
                f"known: {', '.join(DISCRETIZATIONS)}"
            )
        for field in ("dt_min", "dt_max"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise S4DInputError(f"config {self.name!r}: {field} must be a number, got {v!r}")
        if not (0 < self.dt_min <= self.dt_max < float("inf")):
            raise S4DInputError(
                f"config {self.name!r}: need 0 < dt_min <= dt_max < inf, got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )
        if self.activation not in ACTIVATIONS:
            raise S4DInputError(
                f"config {self.name!r}: unknown activation {self.activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        if self.readout not in READOUTS:
            raise S4DInputError(
                f"config {self.name!r}: unknown readout {self.readout!r}; known: {', '.join(READOUTS)}"
            )
        if not isinstance(self.use_D, bool):
            raise S4DInputError(f"config {self.name!r}: use_D must be true or false, got {self.use_D!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json_object(text, "config JSON")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise S4DInputError(f"config JSON has unknown field(s) {unknown}; known: {sorted(known)}")
        missing = sorted(known - set(data))
        if missing:  # a file states its whole config: defaults may change, a stored model must not
            raise S4DInputError(f"config JSON lacks field(s) {missing}; a stored config lists every field")
        return cls(**data)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


NAMED_CONFIGS = {
    "tiny": ModelConfig(name="tiny", H=4, P=2, n_layers=1),
    "small": ModelConfig(name="small", H=32, P=8, n_layers=2),
    "paper": ModelConfig(name="paper", H=128, P=32, n_layers=4),
    "loihi-profile": ModelConfig(name="loihi-profile", H=128, P=4, n_layers=1),
}


def get_config(name: str) -> ModelConfig:
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise S4DInputError(f"unknown config {name!r}; known: {', '.join(NAMED_CONFIGS)}") from None
