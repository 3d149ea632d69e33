"""Name -> implementation tables for the parts a run is assembled from (models, strategy plugins).

A part registers itself where it is defined, together with the dataclass of its config node:

    @MODELS.register("mlp", MLPConfig)
    def build_mlp(cfg, input_shape, num_outputs): ...

so adding a part is one module (plus its YAML file in conf/); `cl_runner.config` reads the
tables to assemble the typed schema. `discover(package)` imports every module of a package,
which is what makes a new module's `register` call run.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Entry:
    name: str
    config: type  # the dataclass of its config node
    impl: Any  # the class or function registered


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, config: type) -> Callable:
        """Decorator registering `impl` under `name`, with the dataclass of its config node."""

        def add(impl):
            if name in self.entries and self.entries[name].impl is not impl:
                raise ValueError(f"two {self.kind}s named {name!r}")
            self.entries[name] = Entry(name, config, impl)
            return impl

        return add

    def __getitem__(self, name: str) -> Entry:
        return self.entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def names(self) -> list[str]:
        return list(self.entries)


def discover(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package (so that their `register` decorators run)."""
    for module in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
