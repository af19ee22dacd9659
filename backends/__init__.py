"""Floor 2, the backends under test behind one contract (SPEC.md section 8): the contract (base), running a
backend with its delays removed (aligned), and the backends, one module each; this module is the registry
(name -> class). A backend whose dependencies are absent still registers and reports "not available: <reason>"
from availability(). Backends from outside the repository (entry points of group `s4dconf.backends`, import paths
"module:Class") come through discovery; resolve_backend is the one resolver of a backend name. Imports `reference`
and `fixedpoint`."""
from __future__ import annotations

from s4dconf.reference.validate import S4DInputError

from .base import Availability, Backend, BackendInfo, BackendRun, Delays, Session
from .discovery import BUILT_IN, ENTRY_POINT_GROUP, BackendSource, entry_point_sources, import_path_source
from .lava_float import LavaFloatBackend
from .lava_fxp import LavaFxpBackend
from .lava_runtime import LavaSimBackend
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


def backend_sources() -> list[BackendSource]:
    """Every backend known without an import path: the built-ins of REGISTRY, then the entry points of group
    `s4dconf.backends` (none imported yet), refused ones included with the reason (BackendSource.problem)."""
    built_in = [BackendSource(n, f"{c.__module__}:{c.__qualname__}", BUILT_IN, cls=c) for n, c in REGISTRY.items()]
    return built_in + entry_point_sources(reserved=REGISTRY)


def backend_names() -> list[str]:
    """The registered names: the built-ins, then the entry points that are not refused."""
    return [s.name for s in backend_sources() if not s.problem]


def resolve_backend(spec: str) -> BackendSource:
    """A backend as named on a command line: a built-in name, an entry point name, or an import path
    "module:Class" (SPEC.md section 8). S4DInputError for an unknown, refused or malformed name."""
    if ":" in spec:
        return import_path_source(spec)
    found = [s for s in backend_sources() if s.name == spec]
    if not found:
        raise S4DInputError(f"unknown backend {spec!r}; known: {', '.join(backend_names())}; or an import path "
                            "module:Class")
    if found[0].problem:
        raise S4DInputError(f"{found[0].where} is refused: {found[0].problem}")
    return found[0]


def runs_lava_simulator(name: str) -> bool:
    """Whether the built-in backend `name` runs networks on the Lava simulator (each costs ~2.5 ms per time step
    and keeps cores busy by itself, SPEC.md 16.5): the accuracy table's budget and the evaluation pool's lease
    depend on it."""
    cls = REGISTRY.get(name)
    return cls is not None and issubclass(cls, LavaSimBackend)


def get_backend(name: str) -> Backend:
    """An instance of the backend `name` names (resolve_backend), constructed once per call."""
    return resolve_backend(name).create()


__all__ = [
    "Availability",
    "Backend",
    "BackendInfo",
    "BackendRun",
    "Delays",
    "Session",
    "REGISTRY",
    "BUILT_IN",
    "BackendSource",
    "ENTRY_POINT_GROUP",
    "backend_names",
    "backend_sources",
    "get_backend",
    "resolve_backend",
    "runs_lava_simulator",
]
