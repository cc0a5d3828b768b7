"""The real volumes that Debian 12 packages ship (part of the transfer check's test set,
bench/realism_volumes.py): where an installed package keeps them, the one-line note when a package is
not installed, and a reader of the MetaImage files (``.mha``, ``.mhd``) that ITK's examples ship.

The packages come from Debian 12's main archive and are read from their installed files; nothing is
downloaded by the project's code:

    apt-get install mricron-data insighttoolkit5-examples

Without root, unpack them into a folder and name it in FEDMRI_DEBIAN_ROOT (default ``/``):

    apt-get download mricron-data insighttoolkit5-examples
    for deb in mricron-data_*.deb insighttoolkit5-examples_*.deb; do dpkg -x "$deb" ~/debian; done
    export FEDMRI_DEBIAN_ROOT=~/debian

(A system whose dpkg leaves out ``/usr/share/doc``, as minimised container images do, has no files of
insighttoolkit5-examples after an install: unpack that one with ``dpkg -x``.)
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT_VARIABLE = "FEDMRI_DEBIAN_ROOT"
# Each package's folder of volumes, relative to the root its files are installed (or unpacked) under.
DEBIAN_FOLDERS: dict[str, str] = {
    "mricron-data": "usr/share/mricron/templates",
    "insighttoolkit5-examples": "usr/share/doc/insighttoolkit5-examples/examples/Data",
}
INSTALL = f"apt-get install {' '.join(DEBIAN_FOLDERS)}"


def debian_root() -> Path:
    """The folder the Debian packages are installed under: ``/``, or FEDMRI_DEBIAN_ROOT."""
    return Path(os.environ.get(ROOT_VARIABLE) or "/")


def is_debian(package: str) -> bool:
    return package in DEBIAN_FOLDERS


def installed_folder(package: str) -> Path:
    """Where the Debian package ``package`` keeps its volumes (whether or not it is there)."""
    return debian_root() / DEBIAN_FOLDERS[package]


def missing_line(package: str, names: list[str] | tuple[str, ...] = ()) -> str:
    """One line: the package is not installed, what is left out, how to install it."""
    left_out = f": {', '.join(names)} left out" if names else ""
    return (
        f"note: Debian package {package} is not installed ({installed_folder(package)} is missing)"
        f"{left_out}; apt-get install {package}, or set {ROOT_VARIABLE} to a folder it was unpacked into "
        "with dpkg -x"
    )


def debian_folder(package: str) -> Path:
    """The installed folder of ``package``'s volumes; a one-line error when it is not installed."""
    from utils.errors import UserError

    folder = installed_folder(package)
    if not folder.is_dir():
        raise UserError(missing_line(package).removeprefix("note: "))
    return folder


def available(volumes: Mapping[str, Any], log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The volumes whose package is at hand: those of a Debian package that is not installed are left
    out, with one line for each such package (on stderr unless ``log`` is given)."""
    missing: dict[str, list[str]] = {}
    for name, volume in volumes.items():
        if is_debian(volume.package) and not installed_folder(volume.package).is_dir():
            missing.setdefault(volume.package, []).append(name)
    say = log or (lambda line: print(line, file=sys.stderr))
    for package, names in missing.items():
        say(missing_line(package, names))
    left_out = {name for names in missing.values() for name in names}
    return {name: volume for name, volume in volumes.items() if name not in left_out}


# -- MetaImage (ITK's .mha: header and data in one file; .mhd: the data in a file beside it) -------------
_TYPES = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4",
          "MET_INT": "i4", "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}  # fmt: skip
# Keys that describe the image without changing how its data is read: accepted and ignored.
_IGNORED = {"TransformMatrix", "Offset", "Position", "CenterOfRotation", "AnatomicalOrientation",
            "ElementSpacing", "Color", "CompressedDataSize"}  # fmt: skip
_READ = {"ObjectType", "NDims", "DimSize", "ElementType", "ElementNumberOfChannels", "BinaryData",
         "BinaryDataByteOrderMSB", "ElementByteOrderMSB", "CompressedData", "ElementDataFile"}  # fmt: skip
MAX_METAIMAGE_BYTES = 1 << 30


def metaimage_header(path: Path, data: bytes) -> tuple[dict[str, str], int]:
    """The header's ``Key = Value`` pairs and the offset of the data after it (the line naming the
    ``ElementDataFile`` ends the header)."""
    from utils.errors import UserError

    header: dict[str, str] = {}
    start = 0
    while "ElementDataFile" not in header:
        end = data.find(b"\n", start)
        if end < 0 or end - start > 4096:
            raise UserError(f"{path}: not a MetaImage file (no ElementDataFile line ends its header)")
        line = data[start:end].decode("latin-1").strip()
        start = end + 1
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{path}: not a MetaImage file (header line {line[:60]!r} is not 'Key = Value')")
        if key.strip() not in _READ | _IGNORED:
            raise UserError(f"{path}: MetaImage key {key.strip()!r} is not supported by this reader")
        header[key.strip()] = value.strip()
    return header, start


def _layout(path: Path, header: dict[str, str]) -> tuple[list[int], int, np.dtype]:
    """The image's size per axis (x first), channels per pixel and element type, checked."""
    from utils.errors import UserError

    def refuse(reason: str) -> UserError:
        return UserError(f"{path}: MetaImage {reason} is not supported by this reader")

    if header.get("ObjectType", "Image") != "Image":
        raise refuse(f"ObjectType {header['ObjectType']!r}")
    if header.get("BinaryData", "True") != "True":
        raise refuse("text (BinaryData = False) data")
    try:
        sizes = [int(v) for v in header["DimSize"].split()]
        dims = int(header.get("NDims", len(sizes)))
        channels = int(header.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError):
        raise UserError(f"{path}: MetaImage header has no valid DimSize, NDims or channel count") from None
    if len(sizes) != dims or not 2 <= dims <= 4 or min(sizes) < 1 or channels < 1:
        raise refuse(f"DimSize {header['DimSize']!r} with NDims {dims}")
    kind = _TYPES.get(header.get("ElementType", ""))
    if kind is None:
        raise refuse(f"ElementType {header.get('ElementType')!r}")
    msb = "True" in (header.get("BinaryDataByteOrderMSB"), header.get("ElementByteOrderMSB"))
    return sizes, channels, np.dtype(kind).newbyteorder(">" if msb else "<")


def read_metaimage(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """A MetaImage file's array, x first as nibabel gives NIfTI's (channels, if more than one, last),
    and its header. Supported: one image, binary data in the file (``LOCAL``) or in one file beside
    it, raw or zlib-compressed (``CompressedData = True``), integer or float elements; anything else
    is one line naming the file."""
    from utils.errors import UserError
    from utils.io import read_bytes

    path = Path(path)
    raw = read_bytes(path, "MetaImage", MAX_METAIMAGE_BYTES)
    header, offset = metaimage_header(path, raw)
    sizes, channels, dtype = _layout(path, header)
    source = header["ElementDataFile"]
    if source == "LOCAL":
        data = raw[offset:]
    elif source in ("LIST", "") or "%" in source or " " in source or Path(source).name != source:
        raise UserError(f"{path}: MetaImage ElementDataFile {source!r} is not supported by this reader")
    else:
        data = read_bytes(path.parent / source, "MetaImage data", MAX_METAIMAGE_BYTES)
    if header.get("CompressedData", "False") == "True":
        try:
            data = zlib.decompress(data)
        except zlib.error:
            raise UserError(f"{path}: MetaImage data is not a zlib stream (CompressedData = True)") from None
    expected = int(np.prod(sizes)) * channels * dtype.itemsize
    if len(data) < expected:
        raise UserError(f"{path}: MetaImage data holds {len(data)} bytes, its header needs {expected}")
    array = np.frombuffer(data[:expected], dtype).reshape(*sizes[::-1], channels)
    array = np.moveaxis(array, range(len(sizes)), range(len(sizes))[::-1])  # x first
    return (array[..., 0] if channels == 1 else array), header
