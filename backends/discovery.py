"""Backends from outside the repository (SPEC.md section 8): the entry points of group `s4dconf.backends` that
installed distributions declare (name -> "module:Class"), and an import path "module:Class" given where a backend
name is asked for. This module finds, names and loads them; backends/__init__.py puts them next to the built-in
REGISTRY in one resolver that the pytest plugin, the CLI and the accuracy table share.

Naming (why): a name is what test ids, skip lists and the records' `backend:path` field carry, so it holds no
colon and no blank. An entry point is named by its entry point name; an import path `pkg.mod:Class` by the class's
qualified name `pkg.mod.Class`.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import re
from collections import defaultdict
from collections.abc import Collection

from s4dconf.reference.validate import S4DInputError

from .base import Backend

ENTRY_POINT_GROUP = "s4dconf.backends"
BUILT_IN = "built in"
IMPORT_PATH = "import path"
CONTRACT = "s4dconf.backends.Backend (the contract of SPEC.md section 8)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_TARGET = re.compile(rf"(?P<module>{_DOTTED}):(?P<qualname>{_DOTTED})\Z")
_TARGET_FORM = "'module:Class' (a dotted module name, one colon, the class; e.g. 'mypkg.backend:MyBackend')"


@dataclasses.dataclass(frozen=True)
class BackendSource:
    """Where one backend comes from: its `name` in the suite, `target` "module:Class", its `origin` as a person reads
    it ("built in", "entry point of DIST VERSION", "import path"), the class itself for a built-in, and `problem`:
    non-empty when the source is refused (never imported); it says why and what to do."""

    name: str
    target: str
    origin: str
    cls: type | None = None
    problem: str = ""

    @property
    def kind(self) -> str:
        """The origin in short: "built in", "entry point" or "import path"."""
        return "entry point" if self.origin.startswith("entry point") else self.origin

    @property
    def where(self) -> str:
        return f"backend {self.name!r} ({self.origin}, {self.target})"

    def load(self) -> type[Backend]:
        """The backend class; S4DInputError when refused, when it does not import, or when it is no Backend."""
        if self.problem:
            raise S4DInputError(f"{self.where} is refused: {self.problem}")
        return self.cls or load_backend_class(self.target, self.where)

    def create(self) -> Backend:
        """An instance, its `name` set to the name it was selected by (a subclass of a built-in inherits the
        built-in's name otherwise). A built-in's own constructor errors pass through: they are bugs, not input."""
        cls = self.load()
        if self.origin == BUILT_IN:
            return cls()
        try:
            backend = cls()
        except Exception as e:  # noqa: BLE001 - outside code: any failure is reported as this backend's
            raise S4DInputError(f"{self.where}: {cls.__qualname__}() failed ({type(e).__name__}: {e}); a backend "
                                "class is constructed with no arguments (SPEC.md section 8)") from e
        backend.name = self.name
        return backend


def parse_target(text: str, where: str) -> tuple[str, str]:
    """'pkg.mod:Outer.Class' -> ('pkg.mod', 'Outer.Class'); S4DInputError naming `where` when malformed."""
    m = _TARGET.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise S4DInputError(f"{where}: {text!r} is not an import path of the form {_TARGET_FORM}")
    return m["module"], m["qualname"]


def load_backend_class(target: str, where: str) -> type[Backend]:
    """Import "module:Class" and check that it is a concrete subclass of Backend; every failure is an
    S4DInputError that names `where`, what failed and what to do."""
    module_name, qualname = parse_target(target, where)
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - ImportError, or whatever the module raises while it runs
        raise S4DInputError(f"{where}: cannot import module {module_name!r} ({type(e).__name__}: {e}); install "
                            "the distribution that provides it, or put its folder on PYTHONPATH") from e
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise S4DInputError(f"{where}: module {module_name!r} has no {qualname!r}; check the class name after "
                                "the colon")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        what = f"class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__} (not a class)"
        raise S4DInputError(f"{where}: {target} is {what}; a backend is a subclass of {CONTRACT}: subclass it (or "
                            "an existing backend) and implement info, prepare and run")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise S4DInputError(f"{where}: {target} does not implement {missing} of {CONTRACT}")
    return obj


def import_path_source(spec: str) -> BackendSource:
    """An import path given as a backend name: named by the class's qualified name 'module.Class'."""
    module_name, qualname = parse_target(spec, f"--backend {spec!r}")
    return BackendSource(f"{module_name}.{qualname}", f"{module_name}:{qualname}", IMPORT_PATH)


def _entry_point_origin(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point (distribution unknown)"


def entry_point_sources(reserved: Collection[str]) -> list[BackendSource]:
    """Every entry point of group `s4dconf.backends` that an installed distribution declares, in name order, none
    imported. Refused (`problem` set), so that a name always means one thing: a name in `reserved` (the built-ins
    keep their names), a name a test id cannot carry, a name two distributions declare."""
    by_name = defaultdict(list)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        by_name[ep.name].append(ep)
    out = []
    for name in sorted(by_name):
        eps = by_name[name]
        origins = [_entry_point_origin(ep) for ep in eps]
        if name in reserved:
            problem = (f"{name!r} is the name of a built-in backend, which always wins (SPEC.md section 8); rename "
                       "the entry point")
        elif not _NAME.match(name):
            problem = (f"{name!r} is not a backend name (letters, digits, '.', '_' and '-', starting with a letter or "
                       "digit); rename the entry point")
        elif len(eps) > 1:
            problem = (f"{name!r} is declared by {len(eps)} distributions ({'; '.join(origins)}); select one by its "
                       "import path, --backend module:Class")
        else:
            problem = ""
        out += [BackendSource(name, ep.value, origin, problem=problem) for ep, origin in zip(eps, origins)]
    return out
