"""Weight files: download with sha256 check, find-or-fetch with verification, and strict safe loading."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rbl import weight_files
from rbl.errors import InputError
from rbl.vggish import (
    CNN_FILENAME,
    CNN_URL,
    PCA_FILENAME,
    PCA_URL,
    download,
    find_or_fetch,
    load_extractor,
    load_state_dicts,
    official_state_dict_shapes,
)

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(scope="module")
def server():
    """A local HTTP server on 127.0.0.1 serving PAYLOAD at /payload.bin (with Content-Length)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path != "/payload.bin":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def folder_is_only(folder: Path, names: set[str]) -> bool:
    return {p.name for p in folder.iterdir()} == names


# ---- download ----


def test_download_http_right_prefix(server, tmp_path):
    dest = tmp_path / "sub" / "w.pth"
    assert download(f"{server}/payload.bin", dest, PAYLOAD_SHA[:8]) == dest
    assert dest.read_bytes() == PAYLOAD
    assert folder_is_only(dest.parent, {"w.pth"})


def test_download_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "w.pth"
    download(src.as_uri(), dest, PAYLOAD_SHA[:8])
    assert dest.read_bytes() == PAYLOAD


def test_download_wrong_prefix_leaves_nothing(server, tmp_path):
    url = f"{server}/payload.bin"
    with pytest.raises(InputError) as err:
        download(url, tmp_path / "w.pth", "00000000" if not PAYLOAD_SHA.startswith("0") else "ffffffff")
    message = str(err.value)
    assert url in message and PAYLOAD_SHA in message and ("00000000" in message or "ffffffff" in message)
    assert folder_is_only(tmp_path, set())


def test_download_wrong_prefix_keeps_existing_file(server, tmp_path):
    dest = tmp_path / "w.pth"
    dest.write_bytes(b"old")
    with pytest.raises(InputError):
        download(f"{server}/payload.bin", dest, "zzzzzzzz")
    assert dest.read_bytes() == b"old" and folder_is_only(tmp_path, {"w.pth"})


def test_download_unreachable_is_quick_input_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/x"
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        download(url, tmp_path / "w.pth", "12345678", timeout=5)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert url in message and "features.vggish.weights_dir" in message and str(tmp_path) in message
    assert CNN_URL in message and PCA_URL in message
    assert folder_is_only(tmp_path, set())


def test_download_http_404_is_input_error(server, tmp_path):
    with pytest.raises(InputError, match="Could not download"):
        download(f"{server}/missing.bin", tmp_path / "w.pth", "12345678")
    assert folder_is_only(tmp_path, set())


# ---- find_or_fetch ----


def test_missing_files_without_download(tmp_path):
    (tmp_path / CNN_FILENAME).write_bytes(b"x")
    with pytest.raises(InputError) as err:
        find_or_fetch(tmp_path, download=False, verify=False)
    message = str(err.value)
    assert str(tmp_path) in message and PCA_FILENAME in message and PCA_URL in message
    assert CNN_URL not in message  # only what is actually missing
    assert "features.extractor: logmel" in message


def test_load_extractor_missing_files_names_folder_and_urls(tmp_path):
    with pytest.raises(InputError) as err:
        load_extractor(tmp_path / "nowhere", download=False)
    message = str(err.value)
    for part in (str(tmp_path / "nowhere"), CNN_FILENAME, PCA_FILENAME, CNN_URL, PCA_URL):
        assert part in message


def test_verify_rejects_wrong_hash(tmp_path):
    (tmp_path / CNN_FILENAME).write_bytes(b"not the published weights")
    (tmp_path / PCA_FILENAME).write_bytes(b"nor these")
    with pytest.raises(InputError) as err:
        find_or_fetch(tmp_path, download=False)
    message = str(err.value)
    assert str(tmp_path / CNN_FILENAME) in message and "10086976" in message and CNN_URL in message
    assert not (tmp_path / f"{CNN_FILENAME}.sha256").exists()
    # verify=False accepts present files as they are.
    assert find_or_fetch(tmp_path, download=False, verify=False) == (tmp_path / CNN_FILENAME, tmp_path / PCA_FILENAME)


def test_verify_writes_marker_and_skips_rehash(tmp_path, monkeypatch):
    """Pretend the published prefixes are those of two local files, to exercise the verified path."""
    cnn, pca = tmp_path / CNN_FILENAME, tmp_path / PCA_FILENAME
    cnn.write_bytes(b"cnn bytes")
    pca.write_bytes(b"pca bytes")
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (cnn, pca)}
    official = tuple((name, url, digests[name][:8]) for name, url, _ in weight_files.OFFICIAL_FILES)
    monkeypatch.setattr(weight_files, "OFFICIAL_FILES", official)
    assert find_or_fetch(tmp_path, download=False) == (cnn, pca)
    assert (tmp_path / f"{CNN_FILENAME}.sha256").read_text().split()[0] == digests[CNN_FILENAME]

    hashed = []
    real = weight_files._sha256
    monkeypatch.setattr(weight_files, "_sha256", lambda p: hashed.append(p) or real(p))
    find_or_fetch(tmp_path, download=False)
    assert hashed == []  # markers recorded for the files as they are: no rehash
    cnn.write_bytes(b"tampered")
    os.utime(cnn, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    with pytest.raises(InputError, match=str(cnn)):
        find_or_fetch(tmp_path, download=False)
    assert hashed == [cnn]


def test_file_digest_is_recorded_reused_and_renewed(tmp_path, monkeypatch):
    cnn, pca = tmp_path / CNN_FILENAME, tmp_path / PCA_FILENAME
    cnn.write_bytes(b"generated cnn")
    pca.write_bytes(b"generated pca")
    assert weight_files.file_digest(cnn) == hashlib.sha256(b"generated cnn").hexdigest()
    hashed = []
    real = weight_files._sha256
    monkeypatch.setattr(weight_files, "_sha256", lambda p: hashed.append(p) or real(p))
    assert weight_files.file_digest(cnn) == hashlib.sha256(b"generated cnn").hexdigest()
    assert hashed == []  # read from the marker
    cnn.write_bytes(b"changed")
    os.utime(cnn, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert weight_files.file_digest(cnn) == hashlib.sha256(b"changed").hexdigest()
    assert hashed == [cnn]
    # Another file of the same size put in place with an older time (as `cp -p` does): the marker,
    # now newer than the file, was recorded for other contents, so the file is hashed again.
    cnn.write_bytes(b"CHANGED")
    os.utime(cnn, ns=(10**18, 10**18))
    assert weight_files.file_digest(cnn) == hashlib.sha256(b"CHANGED").hexdigest()
    assert hashed == [cnn, cnn]
    # A recorded digest is not a verification: the published prefixes still refuse these files.
    with pytest.raises(InputError, match="10086976"):
        find_or_fetch(tmp_path, download=False)


def test_find_or_fetch_downloads_absent_files(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    blobs = {CNN_FILENAME: b"cnn" * 1000, PCA_FILENAME: b"pca" * 1000}
    official = []
    for name, data in blobs.items():
        (served / name).write_bytes(data)
        official.append((name, (served / name).as_uri(), hashlib.sha256(data).hexdigest()[:8]))
    monkeypatch.setattr(weight_files, "OFFICIAL_FILES", tuple(official))
    dest = tmp_path / "weights"
    cnn, pca = find_or_fetch(dest, download=True)
    assert cnn.read_bytes() == blobs[CNN_FILENAME] and pca.read_bytes() == blobs[PCA_FILENAME]
    assert folder_is_only(dest, {CNN_FILENAME, PCA_FILENAME, f"{CNN_FILENAME}.sha256", f"{PCA_FILENAME}.sha256"})


# ---- load_state_dicts ----


def small_state_dict() -> dict[str, torch.Tensor]:
    """Official keys and shapes, each tensor a broadcast view of one value (tiny on disk, full shape)."""
    return {k: torch.zeros(1).expand(shape) for k, shape in official_state_dict_shapes().items()}


def good_pca() -> dict[str, torch.Tensor]:
    return {"pca_eigen_vectors": torch.eye(128), "pca_means": torch.zeros(128)}


def save_pair(folder: Path, cnn: dict, pca: dict) -> tuple[Path, Path]:
    torch.save(cnn, folder / CNN_FILENAME)
    torch.save(pca, folder / PCA_FILENAME)
    return folder / CNN_FILENAME, folder / PCA_FILENAME


def test_load_valid_small(tmp_path):
    cnn, pca = load_state_dicts(*save_pair(tmp_path, small_state_dict(), good_pca()))
    assert {k: tuple(v.shape) for k, v in cnn.items()} == official_state_dict_shapes()
    assert pca["pca_means"].shape == (128,)


def test_load_numpy_pca_with_column_means(tmp_path):
    pca = {"pca_eigen_vectors": np.eye(128), "pca_means": np.arange(128.0).reshape(128, 1)}
    _, loaded = load_state_dicts(*save_pair(tmp_path, small_state_dict(), pca))
    assert loaded["pca_means"].dtype == torch.float32 and loaded["pca_means"].shape == (128,)
    assert loaded["pca_means"][5] == 5.0


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.pop("features.8.bias"), "features.8.bias"),
        (lambda d: d.update({"features.15.weight": torch.zeros(3)}), "features.15.weight"),
        (lambda d: d.update({"embeddings.4.weight": torch.zeros(1).expand(64, 4096)}), "embeddings.4.weight"),
    ],
    ids=["missing", "extra", "shape"],
)
def test_bad_cnn_dict(tmp_path, edit, key):
    cnn = small_state_dict()
    edit(cnn)
    paths = save_pair(tmp_path, cnn, good_pca())
    with pytest.raises(InputError) as err:
        load_state_dicts(*paths)
    assert key in str(err.value) and str(paths[0]) in str(err.value)


def test_bad_pca_dict(tmp_path):
    paths = save_pair(tmp_path, small_state_dict(), {"pca_eigen_vectors": torch.zeros(128, 64), "pca_means": [1]})
    with pytest.raises(InputError) as err:
        load_state_dicts(*paths)
    message = str(err.value)
    assert str(paths[1]) in message and "pca_eigen_vectors" in message and "pca_means" in message


class Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_refuses_arbitrary_objects(tmp_path, capsys):
    pca = good_pca()
    pca["extra"] = Payload()
    paths = save_pair(tmp_path, small_state_dict(), pca)
    with pytest.raises(InputError, match="Could not load"):
        load_state_dicts(*paths)
    assert "unpickled!" not in capsys.readouterr().out


def test_not_a_torch_file(tmp_path):
    paths = save_pair(tmp_path, small_state_dict(), good_pca())
    paths[0].write_bytes(b"<html>not found</html>")
    with pytest.raises(InputError) as err:
        load_state_dicts(*paths)
    assert str(paths[0]) in str(err.value)


def test_weights_state_says_what_extraction_will_find(tmp_path, monkeypatch):
    from rbl import fingerprint
    from rbl.feature_settings import WEIGHT_FILES, weights_state

    assert weights_state(tmp_path, download=True) == "published,published"  # to be fetched and verified
    assert weights_state(tmp_path, download=False) == "absent,absent"
    (cnn, cnn_prefix), (pca, _) = WEIGHT_FILES
    (tmp_path / cnn).write_bytes(b"the published network")
    fingerprint.record_digest(tmp_path / cnn, cnn_prefix + "0" * 56)  # a marker vouching for it
    (tmp_path / pca).write_bytes(b"someone's own parameters")
    own = hashlib.sha256(b"someone's own parameters").hexdigest()
    assert weights_state(tmp_path, download=False) == f"published,{own}"
    hashed = []
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p: hashed.append(p) or "f" * 64)
    assert weights_state(tmp_path, download=False) == f"published,{own}"  # from the markers now
    assert hashed == []
