"""What a SuperNode says about its site: ``--node-config 'site="brats" data-root="/data/brats"'``.

Read without torch, so that a site can name itself cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.errors import UserError

EXAMPLE = '--node-config \'site="brats" data-root="/data/brats" output-dir="/srv/fedmri"\''


@dataclass(frozen=True)
class NodeSettings:
    """A site's node config.

    Attributes:
        site: the site's name in the federation config (``sites[].name``).
        data_root: the site's data folder (``source.root`` of its source); for a simulated site, the
            folder its generated data is cached in.
        output_dir: where the site keeps its state, checkpoints and results, under ``<name>/<site>/``.
        cache_dir: decoded-volume cache of file sources (default: the config's ``data.cache_dir``).
    """

    site: str
    data_root: Path | None = None
    output_dir: Path = Path("runs")
    cache_dir: Path | None = None

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeSettings:
        """Parse the SuperNode's node config; a missing or empty ``site`` is a UserError."""
        site = node_config.get("site")
        if not isinstance(site, str) or not site.strip():
            raise UserError(f"node config site: required, the SuperNode's site name, e.g. {EXAMPLE}")

        def path(key: str) -> Path | None:
            value = node_config.get(key)
            if value is None or str(value).strip() == "":
                return None
            return Path(str(value)).expanduser().absolute()

        return cls(
            site=site.strip(),
            data_root=path("data-root"),
            output_dir=path("output-dir") or Path("runs").absolute(),
            cache_dir=path("cache-dir"),
        )
