"""The federated algorithms, one module (or package, with its own maths beside it) each, found by
looking in this package.

Adding an algorithm is adding one module here with a :class:`~fl.algorithms.base.Server` subclass
(its ``name``, ``label``, ``Options`` and client half, whose :class:`~fl.algorithms.base.LocalPlan`
fills the hooks it needs); :func:`register` adds one defined elsewhere (a test, a user's script)
before the config is validated.
"""

from __future__ import annotations

import importlib
import pkgutil

from fl.algorithms.base import AlgorithmOptions, Client, Context, LocalPlan, Payload, Phase, Reply, Server

ALGORITHMS: dict[str, type[Server]] = {}
# Display order of the algorithms in tables; any other comes after these, in registration order.
ORDER = (
    "fedmri",
    "fedavg",
    "fedprox",
    "fedbn",
    "lgfedavg",
    "fedper",
    "fedrep",
    "scaffold",
    "moon",
    "ditto",
    "flmrcm",
    "singleset",
)


def register(cls: type[Server]) -> type[Server]:
    """Add an algorithm (a Server subclass with a unique ``name``) to :data:`ALGORITHMS`."""
    if cls.name in ALGORITHMS and ALGORITHMS[cls.name] is not cls:
        raise ValueError(f"algorithm {cls.name!r} is registered twice")
    ALGORITHMS[cls.name] = cls
    return cls


def _discover() -> None:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Server)
                and value.__module__ == module.__name__
                and value is not Server
                and "name" in value.__dict__
            ):
                found.append(value)
    rank = {name: i for i, name in enumerate(ORDER)}
    for cls in sorted(found, key=lambda c: (rank.get(c.name, len(rank)), c.name)):
        register(cls)


def _algorithm(name: str) -> type[Server]:
    if name not in ALGORITHMS:
        raise ValueError(
            f"fl.algorithm: {name!r} is not a federated algorithm; expected one of {list(ALGORITHMS)}"
        )
    return ALGORITHMS[name]


def build_server(name: str, options: AlgorithmOptions | None, context: Context) -> Server:
    """The server half of algorithm ``name``."""
    return _algorithm(name)(options, context)


def build_client(name: str, options: AlgorithmOptions | None, context: Context, site: str) -> Client:
    """The site half of algorithm ``name`` for ``site``."""
    return _algorithm(name).client(options, context, site)


_discover()

__all__ = [
    "ALGORITHMS",
    "AlgorithmOptions",
    "Client",
    "Context",
    "LocalPlan",
    "Payload",
    "Phase",
    "Reply",
    "Server",
    "build_client",
    "build_server",
    "register",
]
