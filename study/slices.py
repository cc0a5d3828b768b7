"""The reconstruction figures: each finished run's reconstruction of the same test slices (the middle
slice of every site's first test volume), kept in ``<results>/slices/`` beside its raw file, and drawn
from there like every table from the raw files: ``figures/reconstructions.png`` and ``errors.png``."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from study.records import Manifest, ManifestRow
from utils.errors import UserError

SLICES = "slices"  # <results>/slices/: each run's reconstructions of the figure slices, for --report
Reconstructions = tuple[int, list[str], list[np.ndarray], list]  # seed, columns, targets, rows


def figure_rows(rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """The manifest rows shown in the reconstruction figures: the compared methods (all rows when the
    comparison has only ablations)."""
    return [r for r in rows if "comparison" in r.families] or list(rows)


def _npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """A compressed ``.npz`` whose bytes depend on its arrays only (fixed member times), so writing the
    same slices again leaves a committed file unchanged."""
    from utils.io import atomic_write_bytes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in {**arrays, "meta": np.array(json.dumps(meta))}.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    atomic_write_bytes(path, buffer.getvalue())


def save_slices(
    folder: Path,
    key: str,
    seed: int,
    columns: Sequence[str],
    recon: Sequence[np.ndarray],
    zero_filled: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
) -> None:
    """One run's reconstructions of the figure slices (one per site column) as float16 in
    ``<folder>/slices/<key>.npz`` (tens of KB), and its seed's zero-filled inputs and ground truths,
    which every run of that seed shares, in ``slices/seed<seed>-inputs.npz``. The first run of a seed
    writes the inputs; a later one keeps them where they hold the same slices to float16 rounding (a
    CPU with other vector units can round the zero-filled input's last bit differently), so the
    committed figures do not depend on which machine trained the seed's last run. The figures are
    drawn from these committed files like every table from the raw files, a seed once all its methods
    are in."""
    (folder / SLICES).mkdir(parents=True, exist_ok=True)
    meta = {"columns": list(columns)}
    own = {f"recon_{c}": np.asarray(x, np.float16) for c, x in enumerate(recon)}
    _npz(folder / SLICES / f"{key}.npz", own, meta)
    inputs = {f"zero_filled_{c}": np.asarray(x, np.float16) for c, x in enumerate(zero_filled)}
    inputs.update({f"target_{c}": np.asarray(x, np.float16) for c, x in enumerate(targets)})
    path = folder / SLICES / f"seed{seed}-inputs.npz"
    if not _same_slices(path, inputs, meta):
        _npz(path, inputs, meta)


def _same_slices(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Whether the slices file ``path`` holds ``arrays`` with ``meta``, each value within float16's
    rounding of it (a relative 2**-10, and 2**-14 near zero); False if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if set(data.files) != {*arrays, "meta"} or json.loads(str(data["meta"])) != meta:
                return False
            for name, array in arrays.items():
                found, wanted = data[name].astype(np.float32), array.astype(np.float32)
                if found.shape != wanted.shape or not np.allclose(found, wanted, rtol=2**-10, atol=2**-14):
                    return False
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return False
    return True


def _read_npz(path: Path, names: Sequence[str], columns: list[str] | None) -> tuple[list[str], list[list]]:
    """``(columns, [[array per column] per name])`` of one slices file; a file that cannot be read, or
    whose columns differ from ``columns``, is one :class:`UserError` line."""
    try:
        with np.load(path, allow_pickle=False) as data:
            found = list(json.loads(str(data["meta"]))["columns"])
            if columns is not None and found != columns:
                raise UserError(f"{path}: its figure slices are {found}, the other runs' {columns}")
            arrays = [[data[f"{n}_{c}"].astype(np.float32) for c in range(len(found))] for n in names]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        reason = f"{type(err).__name__}: {err}"
        raise UserError(f"{path}: not a readable slices file ({reason})") from None
    return found, arrays


def load_reconstructions(folder: Path, manifest: Manifest) -> Reconstructions | None:
    """``(seed, columns, targets, rows)`` of the reconstruction figures: the first of the manifest's seeds
    whose every figure row has its slices file in ``<folder>/slices/`` (rows: zero-filled, then each
    method in table order); None when no seed has them all."""
    chosen = figure_rows(manifest.rows)
    seeds = sorted({int(s) for r in chosen for s in r.runs})
    for seed in seeds:
        keys = [r.runs.get(str(seed)) for r in chosen]
        paths = [folder / SLICES / f"{key}.npz" for key in keys if key]
        inputs = folder / SLICES / f"seed{seed}-inputs.npz"
        if len(paths) < len(keys) or not all(p.is_file() for p in (inputs, *paths)):
            continue
        columns, (zero_filled, targets) = _read_npz(inputs, ("zero_filled", "target"), None)
        rows = [("zero-filled", zero_filled)]
        rows += [(r.label, _read_npz(p, ("recon",), columns)[1][0]) for r, p in zip(chosen, paths)]
        return seed, columns, targets, rows
    return None


def reconstruction_figures(folder: Path, slices: Reconstructions) -> list[Path]:
    """``figures/reconstructions.png`` and ``figures/errors.png`` from :func:`load_reconstructions`."""
    from utils.figures import reconstruction_grid

    seed, columns, targets, rows = slices
    images, errors = folder / "figures" / "reconstructions.png", folder / "figures" / "errors.png"
    reconstruction_grid(images, columns, targets, rows, title=f"reconstructions, seed {seed}")
    title = f"reconstruction errors, seed {seed}"
    reconstruction_grid(errors, columns, targets, rows, errors=True, title=title)
    return [images, errors]


class FigureSlices:
    """Each finished run's reconstruction of the figure slices, saved to ``<results>/slices/`` as the
    run's raw file is kept; the sites are built once per data configuration and seed."""

    def __init__(self, results: Path, rows: Sequence[ManifestRow]):
        self.results = results
        self.keys = {key for row in figure_rows(rows) for key in row.runs.values()}
        self.sites: dict[str, Any] = {}

    def record(self, key: str, config: Any, run_dir: Path) -> None:
        """Save ``key``'s slices when it is one of the figures' runs and its run folder is finished."""
        if key not in self.keys or not (run_dir / "results.json").is_file():
            return
        from assembly.build import quiet_lightning
        from assembly.evaluation import build_sites, figure_slice, load_run, new_module, reconstruct_slice

        quiet_lightning()
        setup = config.to_dict()
        data_key = json.dumps({k: setup[k] for k in ("seed", "data", "sites")}, sort_keys=True)
        if data_key not in self.sites:
            self.sites[data_key] = build_sites(config)
        sites = self.sites[data_key]
        trained = load_run(run_dir)
        columns, pictures = [], []
        for name, dm in sites.items():
            volume, index = figure_slice(dm)
            module = new_module(trained.config, trained.models[name])
            pictures.append(reconstruct_slice(module, dm, volume, index))
            columns.append(f"{name}: {volume}, slice {index}")
        recon, zero_filled, targets = ([p[k] for p in pictures] for k in ("recon", "zero_filled", "target"))
        save_slices(self.results, key, config.seed, columns, recon, zero_filled, targets)
