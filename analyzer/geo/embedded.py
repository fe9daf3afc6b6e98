"""The embedded databases: decompress each shipped .xz once into a cache directory, then mmap it.

Decompressing on every run would cost a second and lose the C extension's mmap speed; the cached
copy is named after its sha256 so a newer build never picks up a stale file, and it is verified
against MANIFEST.json before use so a truncated or tampered cache file is rebuilt, not trusted.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import shutil
import tempfile
from pathlib import Path

from analyzer.common.hashing import file_sha256
from analyzer.geo.datafiles import DATA_DIR, manifest


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_dir(env: dict[str, str] | None = None) -> Path:
    """`$CONFSCOPE_CACHE/geo`, else `~/.cache/confscope/geo`, else a per-user temp directory."""
    environ = os.environ if env is None else env
    candidates: list[Path] = []
    if environ.get("CONFSCOPE_CACHE"):
        candidates.append(Path(environ["CONFSCOPE_CACHE"]).expanduser())
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory (service accounts)
        candidates.append(Path.home() / ".cache" / "confscope")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"confscope-{uid}")
    for base in candidates:
        target = base / "geo"
        if _writable_dir(target):
            return target
    raise OSError("no writable cache directory for the embedded geolocation data")


def embedded_names() -> list[str]:
    """Names (e.g. "country.mmdb.xz") of the embedded mmdb files listed in the manifest."""
    files = manifest().get("files", {})
    return [name for name, meta in files.items() if name.endswith(".mmdb.xz") and meta.get("sha256")]


def materialize(name: str, env: dict[str, str] | None = None) -> Path | None:
    """Path of the decompressed, sha256-verified copy of an embedded file; None if unavailable."""
    meta = manifest().get("files", {}).get(name)
    src = DATA_DIR / name
    if not meta or not src.is_file():
        return None
    want = str(meta.get("sha256", ""))
    stem = name.removesuffix(".xz").removesuffix(".mmdb")
    target = cache_dir(env) / f"{stem}-{want[:16]}.mmdb"
    if target.is_file() and file_sha256(target) == want:
        return target
    # Write to a private temp file and rename, so parallel batch workers never read a half file.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, lzma.open(src, "rb") as fin:
            shutil.copyfileobj(fin, out, 1 << 20)
        if file_sha256(tmp) != want:
            return None
        os.replace(tmp, target)
    except (OSError, lzma.LZMAError):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return target
