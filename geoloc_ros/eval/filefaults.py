"""File fault rows of ``geoloc bench faults``: broken map directories and weights files must give a
clear error naming the file (never a crash, never a silent wrong answer), map file names must not
leave the map directory, and nothing in the package may load a pickle.

:func:`file_fault_rows` breaks copies of a good map directory / weights file with
:mod:`geoloc_ros.eval.inject` and opens them the way the pipeline does; :func:`pickle_loads`
lists every ``pickle.load``, ``np.load`` without ``allow_pickle=False`` and ``torch.load``
without ``weights_only=True`` in a source tree (AST, not grep, so comments do not count).
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

from geoloc_ros.eval import inject as inj

__all__ = ["open_map_like_the_pipeline", "file_fault_rows", "pickle_loads"]


def open_map_like_the_pipeline(root: Path, cfg=None):
    """MapDir.open + the engines' loaders + the datum, as ``Localizer`` does."""
    from geoloc_ros.maps.mapdir import MapDir
    from geoloc_ros.pipeline import Localizer
    return Localizer(cfg, MapDir.open(root))


def _attempt(fn, names: tuple[str, ...], expected: tuple[type, ...]) -> dict:
    """Run ``fn``; ok when it raises one of ``expected`` with a message naming one of ``names``."""
    try:
        fn()
    except expected as e:
        msg = str(e)
        named = any(n in msg for n in names)
        return {"ok": named, "error": f"{type(e).__name__}: {msg}", "crash": False,
                "why": "" if named else f"message does not name {names}"}
    except Exception as e:  # noqa: BLE001 - any other exception is a crash for this suite
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "crash": True, "why": "unexpected exception"}
    return {"ok": False, "error": "", "crash": False, "why": "accepted silently"}


def file_fault_rows(map_root: str | Path, work_dir: str | Path, cfg=None, weights: str | Path | None = None) -> list[dict]:
    """Rows ``{fault, ok, crash, error, why}`` for broken copies of the map ``map_root`` (a
    good map with ``bev_keyframes.npz``) and of the REIN weights (``weights``: default the
    packaged file)."""
    from geoloc_ros.bev.rein import WeightsError, default_weights_path, load_rein
    from geoloc_ros.maps.mapdir import MapDir, MapError
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    KF = "bev_keyframes.npz"

    def broken(name, brk):
        d = inj.copy_mapdir(map_root, work / name)
        brk(d)
        return d

    cases = [
        ("map.truncated_npz", lambda d: inj.truncate_file(d / KF, 0.5), (KF,), True),
        ("map.corrupt_npz", lambda d: inj.corrupt_file(d / KF), (KF,), True),
        ("map.corrupt_manifest", lambda d: inj.truncate_file(d / "manifest.json", 0.6), ("manifest.json",), True),
        ("map.version_mismatch", lambda d: inj.set_map_version(d, 99), ("manifest.json",), True),
        ("map.missing_file", lambda d: (d / KF).unlink(), (KF,), True),
        ("map.escape_dotdot", lambda d: inj.escape_manifest(d, "../outside.json"), ("../outside.json",), True),
        ("map.escape_absolute", lambda d: inj.escape_manifest(d, "/etc/passwd"), ("/etc/passwd",), True),
        ("map.escape_nested", lambda d: inj.escape_manifest(d, "sub/../../x.json"), ("sub/../../x.json",), True),
        ("map.escape_symlink", lambda d: _symlink_out(d), ("evil.json",), True),
        ("map.truncated_npz_unverified", lambda d: inj.truncate_file(d / KF, 0.5), (KF,), False),
        ("map.corrupt_npz_unverified", lambda d: inj.corrupt_file(d / KF), (KF,), False),
    ]
    for name, brk, names, verify in cases:
        d = broken(name, brk)
        if verify:
            row = _attempt(lambda d=d: open_map_like_the_pipeline(d, cfg), names, (MapError,))
        else:
            row = _attempt(lambda d=d: MapDir.open(d, verify=False).read_arrays(KF), names, (MapError,))
        rows.append({"fault": name, **row})
    rows.append({"fault": "map.not_a_map_dir", **_attempt(lambda: MapDir.open(work), (str(work),), (MapError,))})
    good = Path(weights) if weights else default_weights_path()
    wcases = [
        ("weights.corrupt", lambda p: inj.write_corrupt_weights(p)),
        ("weights.truncated", lambda p: (p.write_bytes(good.read_bytes()), inj.truncate_file(p, 0.5))),
        ("weights.wrong_shape", lambda p: inj.write_wrong_shape_weights(good, p)),
        ("weights.pickle_payload", lambda p: inj.write_pickle_weights(p)),
        ("weights.missing", lambda p: None),
    ]
    for name, make in wcases:
        p = work / f"{name}.pt"
        if p.exists():
            p.unlink()
        make(p)
        rows.append({"fault": name, **_attempt(lambda p=p: load_rein(path=p), (str(p),), (WeightsError,))})
    return rows


def _symlink_out(d: Path) -> None:
    """A manifest entry that is a symlink to a file outside the map directory."""
    import json
    target = d.parent / "outside_target.json"
    target.write_text("{}")
    (d / "evil.json").symlink_to(target)
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["evil.json"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(m))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def pickle_loads(root: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """``file:line: what`` for every call that may unpickle under ``root`` (.py files)."""
    out = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [x for x in dirnames if not x.startswith(".") and x not in ("__pycache__", "build")]
        for f in files:
            if not f.endswith(".py"):
                continue
            p = Path(dirpath) / f
            if any(s in str(p) for s in skip):
                continue
            try:
                tree = ast.parse(p.read_text(), str(p))
            except (SyntaxError, UnicodeDecodeError) as e:
                out.append(f"{p}: unparsable ({e})")
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
                where = f"{p}:{node.lineno}"
                if owner in ("pickle", "cPickle", "dill", "joblib") and name in ("load", "loads"):
                    out.append(f"{where}: {owner}.{name}")
                elif owner in ("np", "numpy") and name == "load" and not _is_const(_kw(node, "allow_pickle"), False):
                    out.append(f"{where}: np.load without allow_pickle=False")
                elif owner == "torch" and name == "load" and not _is_const(_kw(node, "weights_only"), True):
                    out.append(f"{where}: torch.load without weights_only=True")
                elif owner in ("pd", "pandas") and name == "read_pickle":
                    out.append(f"{where}: pandas.read_pickle")
    return out
