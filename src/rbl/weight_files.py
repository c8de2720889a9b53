"""The torchvggish v0.1 weight files: where they come from, fetching them, checking them.

Kept free of torch, so that `features.extractor: auto` can look for the weights (and fall back to
logmel) without the 1.4 s import of torch in every extract job; loading them is rbl.vggish.weights.
Files are checked against the sha256 prefix in their published names (as torch.hub does).
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from rbl.atomic import atomic_path
from rbl.errors import InputError
from rbl.feature_settings import WEIGHT_FILES
from rbl.fingerprint import file_sha256, record_digest, recorded_digest

RELEASE_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"
(CNN_FILENAME, CNN_SHA256_PREFIX), (PCA_FILENAME, PCA_SHA256_PREFIX) = WEIGHT_FILES
CNN_URL = f"{RELEASE_URL}/{CNN_FILENAME}"
PCA_URL = f"{RELEASE_URL}/{PCA_FILENAME}"

# (file name, URL, sha256 prefix) of each official file.
OFFICIAL_FILES: tuple[tuple[str, str, str], ...] = (
    (CNN_FILENAME, CNN_URL, CNN_SHA256_PREFIX),
    (PCA_FILENAME, PCA_URL, PCA_SHA256_PREFIX),
)

_CHUNK = 1 << 20


def _where_to_get(folder: Path) -> str:
    urls = "\n".join(f"  {url}" for _, url, _ in OFFICIAL_FILES)
    return (
        f"Download these files elsewhere and put them in {folder}, or set the config key "
        f"`features.vggish.weights_dir` to a folder that holds them:\n{urls}"
    )


def _fetch(url: str, dest: Path, sha256_prefix: str, timeout: float) -> str:
    """Stream `url` to `dest` atomically, checking the sha256 prefix; return the full hex digest."""
    dest = Path(dest)
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                size = response.headers.get("Content-Length") if response.headers else None
                with tqdm(
                    total=int(size) if size else None,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not size or not sys.stderr.isatty(),
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise InputError(
                f"Could not download the VGGish weights from {url} ({reason}). " + _where_to_get(dest.parent)
            ) from err
        hexdigest = digest.hexdigest()
        if not hexdigest.startswith(sha256_prefix):
            raise InputError(
                f"The file downloaded from {url} has sha256 {hexdigest}, which does not start with the "
                f"expected {sha256_prefix}: it is not the published file (corrupt download or changed release). "
                "Nothing was saved. " + _where_to_get(dest.parent)
            )
    return hexdigest


def download(url: str, dest: Path, sha256_prefix: str, timeout: float = 30) -> Path:
    """Download `url` to `dest` (atomic), failing with InputError unless its sha256 starts with the prefix."""
    _fetch(url, Path(dest), sha256_prefix, timeout)
    return Path(dest)


def _sha256(path: Path) -> str:
    return file_sha256(path)


def _marker_vouches(path: Path, sha256_prefix: str) -> bool:
    digest = recorded_digest(path)
    return digest is not None and digest.startswith(sha256_prefix)


def file_digest(path: Path) -> str:
    """The sha256 of a weights file, from its `<name>.sha256` marker when that was recorded for the
    file as it is now (`_recorded_digest`), else hashed and recorded.

    Every extraction job keys its cache on the weights' digests, and hashing the 288 MB CNN file
    takes about 0.3 s. Verification (`find_or_fetch`) still checks the digest against the published
    prefix, so a marker written here never vouches for a file that is not the published one.
    """
    path = Path(path)
    recorded = recorded_digest(path)
    if recorded is not None:
        return recorded
    hexdigest = _sha256(path)
    record_digest(path, hexdigest)
    return hexdigest


def _verify(path: Path, url: str, sha256_prefix: str) -> None:
    """Check a present file's sha256 prefix once; the marker file spares later calls the rehash."""
    if _marker_vouches(path, sha256_prefix):
        return
    hexdigest = _sha256(path)
    if not hexdigest.startswith(sha256_prefix):
        raise InputError(
            f"The VGGish weights file {path} has sha256 {hexdigest}, which does not start with the expected "
            f"{sha256_prefix}: it is corrupt or not the published file. Delete it and download it again "
            f"from {url} (or let the pipeline download it)."
        )
    record_digest(path, hexdigest)


def find_or_fetch(weights_dir: Path, download: bool, verify: bool = True) -> tuple[Path, Path]:
    """Paths of the CNN and PCA weight files in `weights_dir`, downloading absent ones if `download`.

    Present files are checked against the sha256 prefix in their official name when `verify` is set
    (once; a `<name>.sha256` marker newer than the file records the result). `verify=False` accepts
    present files as they are (for locally generated or converted weights).
    """
    weights_dir = Path(weights_dir)
    paths = [weights_dir / name for name, _, _ in OFFICIAL_FILES]
    missing = [(p, url, prefix) for p, (_, url, prefix) in zip(paths, OFFICIAL_FILES) if not p.is_file()]
    if missing and not download:
        names = ", ".join(p.name for p, _, _ in missing)
        raise InputError(
            f"VGGish weights missing from {weights_dir}: {names}. Get them from:\n"
            + "\n".join(f"  {url}" for _, url, _ in missing)
            + f"\nand put them in {weights_dir} (or set `features.vggish.weights_dir` to a folder that holds "
            "them, or set `features.vggish.download: true` where the network allows). The "
            "`features.extractor: logmel` extractor needs no weights."
        )
    for path, (_, url, prefix) in zip(paths, OFFICIAL_FILES):
        if not path.is_file():
            record_digest(path, _fetch(url, path, prefix, timeout=30))
        elif verify:
            _verify(path, url, prefix)
    return paths[0], paths[1]
