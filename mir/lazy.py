"""Package attributes imported on first use (PEP 562), so that light modules of a package load
without its heavy dependencies (torch, librosa)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_getattr(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from its submodule ``where[name]``
    on first use and caches it in the package's namespace."""
    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
