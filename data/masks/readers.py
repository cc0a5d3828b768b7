"""Mask files: a ``.npy`` array, or variable ``mask`` of a ``.mat`` file (MATLAB v7.3 files through h5py).

:func:`load_mask_file` reads a file once per process and checks it (real, finite, 1D or 2D, samples
something); every problem is a UserError naming the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from data.masks.base import frozen
from utils.errors import UserError
from utils.io import check_regular
from utils.paths import check_path_text, not_found


def _read_array(path: Path) -> Any:
    """The raw array stored in a ``.npy`` file or under key ``mask`` of a ``.mat`` file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as err:  # any parse failure of a user's file is that file's problem
            raise UserError(f"mask file {path}: not a readable .npy array ({err})") from None
    if suffix != ".mat":
        raise UserError(f"mask file {path}: expected a .mat or .npy file")
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        return _read_mat73(path)
    except Exception as err:
        raise UserError(f"mask file {path}: not a readable .mat file ({err})") from None
    if "mask" not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__")) or "nothing"
        raise UserError(f"mask file {path}: no variable 'mask' (found: {found})")
    return contents["mask"]


def _read_mat73(path: Path) -> np.ndarray:
    """Key ``mask`` of a MATLAB v7.3 (HDF5) file, transposed back to MATLAB's row-major view."""
    try:
        import h5py
    except ImportError:
        raise UserError(f"mask file {path}: MATLAB v7.3 file; install h5py or save it with -v7") from None
    try:
        with h5py.File(path, "r") as handle:
            if "mask" not in handle:
                found = ", ".join(handle) or "nothing"
                raise UserError(f"mask file {path}: no variable 'mask' (found: {found})")
            return np.asarray(handle["mask"]).T
    except UserError:
        raise
    except Exception as err:  # a truncated or damaged HDF5 file raises OSError, KeyError and others
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"mask file {path}: not a readable MATLAB v7.3 file ({first})") from None


@lru_cache(maxsize=32)
def load_mask_file(path: str) -> np.ndarray:
    """A mask file's array as bool, (H, W) or (W,) (MATLAB row or column vectors become (W,)); read once."""
    check_path_text(path, "mask file")
    file = Path(path)
    if not file.exists():
        raise UserError(f"mask file {file}: {not_found(file)}")
    check_regular(file, "mask file")  # not a folder, FIFO or device: the readers would hang or fail
    array = np.asarray(_read_array(file))
    if array.dtype.kind not in "biuf":
        raise UserError(f"mask file {file}: expected a real numeric array, got dtype {array.dtype}")
    if array.ndim == 2 and 1 in array.shape and array.size > 1:
        array = array.ravel()
    if array.ndim not in (1, 2) or array.size == 0:
        raise UserError(f"mask file {file}: expected a 2D (H, W) or 1D (W,) array, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"mask file {file}: contains NaN or infinite values")
    mask = array != 0
    if not mask.any():
        raise UserError(f"mask file {file}: samples no k-space point (all zero)")
    return frozen(mask)
