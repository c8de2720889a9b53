"""Content hashes recomputed only for files whose stat signature changed (rbl.fingerprint)."""

import hashlib
import os
import shutil

import pytest

from rbl import fingerprint


def write(path, data: bytes, mtime_ns: int | None = None) -> str:
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return str(path)


@pytest.fixture
def counted(monkeypatch):
    """The files actually read for hashing."""
    read = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p: read.append(p) or real(p))
    return read


def test_hashes_are_sha256_and_unchanged_files_are_not_read(tmp_path, counted):
    paths = [write(tmp_path / f"{k}.wav", bytes([k]) * 1000) for k in range(3)]
    table = tmp_path / "hashes.csv"
    first = fingerprint.cached_hashes(paths, table, progress=False)
    assert first == [hashlib.sha256(bytes([k]) * 1000).hexdigest() for k in range(3)]
    assert counted == paths
    counted.clear()
    assert fingerprint.cached_hashes(paths, table, progress=False) == first
    assert counted == []


def test_replacement_with_an_older_mtime_is_seen(tmp_path, counted):
    """cp -p / rsync -a: other content, same size, an older modification time."""
    old = 1_000_000_000 * 10**9
    clip = write(tmp_path / "clip.wav", b"a" * 500, mtime_ns=old + 10**9)
    table = tmp_path / "hashes.csv"
    before = fingerprint.cached_hashes([clip], table, progress=False)
    other = write(tmp_path / "other.wav", b"b" * 500, mtime_ns=old)
    shutil.copy2(other, clip)  # same size, older mtime preserved
    assert os.stat(clip).st_mtime_ns == old
    counted.clear()
    after = fingerprint.cached_hashes([clip], table, progress=False)
    assert after == [hashlib.sha256(b"b" * 500).hexdigest()] != before
    assert counted == [clip]


def test_a_touched_file_is_hashed_again_to_the_same_digest(tmp_path, counted):
    clip = write(tmp_path / "clip.wav", b"x" * 10)
    table = tmp_path / "hashes.csv"
    digests = fingerprint.cached_hashes([clip], table, progress=False)
    os.utime(clip, ns=(5 * 10**18, 5 * 10**18))
    counted.clear()
    assert fingerprint.cached_hashes([clip], table, progress=False) == digests
    assert counted == [clip]
    assert fingerprint.state_digest([clip], dict(zip([clip], digests))) == fingerprint.state_digest(
        [clip], {clip: hashlib.sha256(b"x" * 10).hexdigest()}
    )


@pytest.mark.parametrize(
    "damage", [b"", b"not,a,table\n1,2,3\n", b"path,signature,sha256\nx.wav,1:2,abc\n", b"\xff\xfe\x00garbage"]
)
def test_a_damaged_table_is_never_trusted(tmp_path, counted, damage, caplog):
    clip = write(tmp_path / "clip.wav", b"y" * 10)
    table = tmp_path / "hashes.csv"
    fingerprint.cached_hashes([clip], table, progress=False)
    table.write_bytes(damage)
    counted.clear()
    assert fingerprint.cached_hashes([clip], table, progress=False) == [hashlib.sha256(b"y" * 10).hexdigest()]
    assert counted == [clip]
    assert fingerprint.read_table(table)[clip][1] == hashlib.sha256(b"y" * 10).hexdigest()  # rewritten whole


def test_state_digest_sees_added_removed_and_missing_files(tmp_path):
    a, b = write(tmp_path / "a.wav", b"1"), write(tmp_path / "b.wav", b"2")
    known = dict(zip([a, b], fingerprint.content_hashes([a, b], {}, progress=False)[0]))
    both = fingerprint.state_digest([a, b], known)
    assert fingerprint.state_digest([a], known) != both
    assert fingerprint.state_digest([a, b], {a: known[a]}) != both  # b listed but missing
    assert fingerprint.state_digest([a, b], dict(known)) == both


def test_files_under_lists_by_suffix_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.npy", "a.npy", "c.wav"):
        (tmp_path / name).write_bytes(b"")
    assert fingerprint.files_under(tmp_path, ".npy") == [str(tmp_path / "a.npy"), str(tmp_path / "sub/b.npy")]
