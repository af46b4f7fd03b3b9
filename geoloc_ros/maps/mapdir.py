"""The map directory: a self-describing, checked folder of everything a prior map holds.

Layout::

    MAPDIR/manifest.json     {"format": "geoloc_map", "version": 1, "created": ..., "files": {name: sha256},
                              "meta": {...}}
    MAPDIR/<name>.npz        numpy archives (loaded with allow_pickle=False)
    MAPDIR/<name>.json       JSON documents

Engines store their parts under names they own (``bev_keyframes.npz``, ``bev_meta.json``,
``objects.npz``, ``datum.json``...). Opening checks the format version and every file's sha256;
a mismatch is a :class:`MapError` naming the file. Names are plain file names: nothing can
escape the directory.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MAP_FORMAT = "geoloc_map"
MAP_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

__all__ = ["MapDir", "MapError", "MAP_VERSION"]


class MapError(RuntimeError):
    """A map directory that cannot be used; the message names the directory or file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class MapDir:
    """A map directory opened for reading (``MapDir.open``) or being written (``MapDir.create``)."""

    def __init__(self, root: Path, manifest: dict, writable: bool):
        self.root = Path(root)
        self.manifest = manifest
        self.writable = writable

    # ---- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, meta: dict | None = None) -> "MapDir":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        manifest = {"format": MAP_FORMAT, "version": MAP_VERSION, "created": time.time(),
                    "files": {}, "meta": dict(meta or {})}
        return cls(root, manifest, writable=True)

    def _path(self, name: str) -> Path:
        if not _NAME_RE.match(name) or "/" in name or "\\" in name or name == "manifest.json":
            raise MapError(f"invalid map file name '{name}' (plain file names only)")
        p = (self.root / name).resolve()
        if p.parent != self.root.resolve():
            raise MapError(f"map file name '{name}' escapes the map directory {self.root}")
        return p

    def write_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        """Store numeric arrays as ``name`` (.npz appended when missing)."""
        if not name.endswith(".npz"):
            name += ".npz"
        p = self._path(name)
        for k, a in arrays.items():
            if np.asarray(a).dtype == object:
                raise MapError(f"array '{k}' of {name} has dtype object: not storable without pickle")
        np.savez(p, **arrays)
        self.manifest["files"][name] = _sha256(p)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        if not name.endswith(".json"):
            name += ".json"
        p = self._path(name)
        p.write_text(json.dumps(obj, indent=1))
        self.manifest["files"][name] = _sha256(p)
        return p

    def set_meta(self, **meta) -> None:
        self.manifest["meta"].update(meta)

    def close(self) -> None:
        """Write the manifest (call once every part is written)."""
        (self.root / "manifest.json").write_text(json.dumps(self.manifest, indent=1))

    # ---- reading --------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, verify: bool = True) -> "MapDir":
        root = Path(root)
        mpath = root / "manifest.json"
        if not root.is_dir():
            raise MapError(f"map directory not found: {root}")
        if not mpath.is_file():
            raise MapError(f"{root}: no manifest.json (not a geoloc map directory?)")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MapError(f"{mpath}: corrupt manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != MAP_FORMAT:
            raise MapError(f"{mpath}: not a geoloc map manifest")
        if manifest.get("version") != MAP_VERSION:
            raise MapError(f"{mpath}: map format version {manifest.get('version')!r}, "
                           f"this geoloc_ros reads version {MAP_VERSION}; rebuild the map")
        md = cls(root, manifest, writable=False)
        if verify:
            for name, digest in manifest.get("files", {}).items():
                p = md._path(name)
                if not p.is_file():
                    raise MapError(f"{root}: file '{name}' listed in the manifest is missing")
                if _sha256(p) != digest:
                    raise MapError(f"{root}: checksum mismatch for '{name}' (corrupt or edited)")
        return md

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    def has(self, name: str) -> bool:
        return name in self.manifest.get("files", {})

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        if not name.endswith(".npz"):
            name += ".npz"
        if not self.has(name):
            raise MapError(f"{self.root}: map has no '{name}'")
        try:
            with np.load(self._path(name), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise MapError(f"{self.root}: cannot read '{name}' ({e})") from None

    def read_json(self, name: str) -> Any:
        if not name.endswith(".json"):
            name += ".json"
        if not self.has(name):
            raise MapError(f"{self.root}: map has no '{name}'")
        try:
            return json.loads(self._path(name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MapError(f"{self.root}: corrupt '{name}' ({e})") from None
