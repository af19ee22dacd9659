"""Floor 2, the backends under test behind one contract (SPEC.md section 8): the contract (base), running a
backend with its delays removed (aligned), and the backends, one module each; this module is the registry
(name -> class). A backend whose dependencies are absent still registers and reports "not available: <reason>"
from availability(). Imports `reference` and `fixedpoint`."""
from __future__ import annotations

from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, BackendRun, Delays, Session
from .lava_float import LavaFloatBackend
from .lava_fxp import LavaFxpBackend
from .loihi2 import Loihi2Backend
from .numpy_fxp import NumpyFxpBackend
from .reference import ReferenceBackend
from .torch_backends import TorchConvBackend, TorchConvF64Backend, TorchRecBackend, TorchRecF64Backend

REGISTRY: dict[str, type[Backend]] = {
    ReferenceBackend.name: ReferenceBackend,
    NumpyFxpBackend.name: NumpyFxpBackend,
    LavaFxpBackend.name: LavaFxpBackend,
    LavaFloatBackend.name: LavaFloatBackend,
    Loihi2Backend.name: Loihi2Backend,
    TorchRecBackend.name: TorchRecBackend,
    TorchConvBackend.name: TorchConvBackend,
    TorchRecF64Backend.name: TorchRecF64Backend,
    TorchConvF64Backend.name: TorchConvF64Backend,
}


def backend_names() -> list[str]:
    return list(REGISTRY)


def get_backend(name: str) -> Backend:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise S4DInputError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}") from None


__all__ = [
    "Availability",
    "Backend",
    "BackendInfo",
    "BackendRun",
    "Delays",
    "Session",
    "REGISTRY",
    "backend_names",
    "get_backend",
]
