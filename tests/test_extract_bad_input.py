"""Inputs whose headers ask for more than they hold, allocation failures, and malformed precomputed
features: a clear error naming the file with on_error stop, the clip skipped and listed with the
reason with on_error skip; headers are judged before any data is read or allocated."""

from __future__ import annotations

import io as bytes_io
import json
import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_bad_input import (
    RATE,
    Output,
    _precomputed,
    _precomputed_pipeline,
    add_clip,
    extract,
    ingest,
    tone,
    write_dataset,
)

from rbl import audio, extraction, features
from rbl.errors import InputError
from rbl.extraction import check_npy, load_precomputed


@pytest.fixture
def io(capsys, caplog) -> Output:
    caplog.set_level("INFO", logger="rbl")
    return Output(capsys, caplog)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for the module: the good clips are computed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def dataset(tmp_path):
    """test_bad_input's small dataset: 2 families x 2 kinds, 6 tones each."""
    return write_dataset(tmp_path / "data")


def one_hertz_wav() -> bytes:
    """A 40 KB WAV whose header says 1 Hz: the whole-file path resampled it to a 4 GB array."""
    buffer = bytes_io.BytesIO()
    sf.write(buffer, tone(20000 / RATE, 300), 1, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- audio headers ----------------------------------------------------------------------------


def test_implausible_sample_rate_is_refused_before_decoding(tmp_path):
    path = tmp_path / "one_hertz.wav"
    path.write_bytes(one_hertz_wav())
    assert 40_000 < path.stat().st_size < 41_000
    tracemalloc.start()
    with pytest.raises(InputError, match=r"one_hertz.wav: the header gives a sample rate of 1 Hz"):
        next(audio.stream(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # nothing of the file's size, let alone its 4 GB resampled length
    # The lowest rate whose band reaches the lowest mel band is accepted.
    sf.write(tmp_path / "low.wav", tone(2.0, 100, rate=audio.MIN_RATE + 1), audio.MIN_RATE + 1)
    assert len(audio.load(tmp_path / "low.wav")) == pytest.approx(2 * RATE, abs=2)


def test_one_hertz_header_stops_naming_the_file(io, dataset, cache):
    add_clip(dataset, "one_hertz.wav", "b2", one_hertz_wav())
    assert ingest(io, dataset)[0] == 0
    code, err = extract(io, dataset, cache)
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "one_hertz.wav" in line and "sample rate of 1 Hz" in line and "features.on_error: skip" in line
    assert not (dataset / "feats.npy").exists()


def test_one_hertz_header_is_skipped_with_the_reason(io, dataset, cache):
    add_clip(dataset, "one_hertz.wav", "b2", one_hertz_wav())
    assert ingest(io, dataset)[0] == 0
    code, _ = extract(io, dataset, cache, "feats", "skip")
    assert code == 0
    skipped = pd.read_csv(dataset / "feats.skipped.csv")
    assert skipped["file"].tolist() == ["one_hertz.wav"]
    assert "sample rate of 1 Hz" in skipped["reason"][0]
    feats = np.load(dataset / "feats.npy")
    assert np.isnan(feats[-1]).all() and np.isfinite(feats[:-1]).all()


# --- allocation failures follow on_error ------------------------------------------------------


def fail_on(monkeypatch, name: str, error: Exception) -> None:
    """Decoding `name` yields a first block, then fails to allocate (as a huge resampling would)."""
    stream = audio.stream

    def failing(path, *args, **kwargs):
        blocks = stream(path, *args, **kwargs)
        if str(path).endswith(name):
            yield next(blocks)
            raise error
        yield from blocks

    monkeypatch.setattr(audio, "stream", failing)


NUMPY_OOM = MemoryError("Unable to allocate 4.00 GiB for an array with shape (1073741824,) and data type float32")


def test_allocation_failure_while_decoding_stops_naming_the_file(io, dataset, cache, monkeypatch):
    add_clip(dataset, "huge.wav", "b2", tone(1.0, 300))
    assert ingest(io, dataset)[0] == 0
    fail_on(monkeypatch, "huge.wav", NUMPY_OOM)
    code, err = extract(io, dataset, cache)
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "huge.wav: ran out of memory decoding it (Unable to allocate 4.00 GiB" in line
    assert "features.on_error: skip" in line


def test_allocation_failure_while_decoding_is_skipped(io, dataset, cache, monkeypatch):
    add_clip(dataset, "huge.wav", "b2", tone(1.0, 300))
    assert ingest(io, dataset)[0] == 0
    fail_on(monkeypatch, "huge.wav", NUMPY_OOM)
    assert extract(io, dataset, cache, "feats", "skip")[0] == 0
    skipped = pd.read_csv(dataset / "feats.skipped.csv")
    assert skipped["file"].tolist() == ["huge.wav"] and skipped["reason"][0].startswith("ran out of memory")
    info = json.loads((dataset / "feats.json").read_text())
    assert info["skipped"] == 1 and np.isnan(np.load(dataset / "feats.npy")[-1]).all()


def test_allocation_failure_in_the_frontend_skips_only_the_clip_that_needs_it(tmp_path, monkeypatch):
    """A group of pieces that cannot be computed for want of memory is retried piece by piece; only
    the piece that fails alone takes its clip out, and the other clips' features are unchanged."""
    paths = []
    for k, seconds in enumerate([0.5, 1.0, 2.0, 0.7]):
        path = tmp_path / f"c{k}.wav"
        sf.write(path, tone(seconds, 200 + 100 * k, seed=k), RATE)
        paths.append(str(path))
    digests = [f"{k:064x}" for k in range(len(paths))]
    settings = extraction.ExtractSettings(extractor="logmel", batch_clips=4, on_error="skip")
    clean, _ = extraction.extract(paths, digests, settings, tmp_path / "clean", progress=False)

    logmel, calls = features.logmel_frames, []

    def limited(wave, frames):
        calls.append(len(wave) / RATE)
        if len(wave) == 2 * RATE:
            raise NUMPY_OOM
        return logmel(wave, frames)

    monkeypatch.setattr(features, "logmel_frames", limited)
    feats, info = extraction.extract(paths, digests, settings, tmp_path / "cache", progress=False)
    # the group of 4 fails at the third clip, then each piece alone: only the third fails again
    assert calls == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0, 0.7]
    assert [c["path"] for c in info["skipped_clips"]] == [paths[2]]
    assert info["skipped_clips"][0]["reason"].startswith("ran out of memory computing its features")
    assert np.isnan(feats[2]).all()
    np.testing.assert_array_equal(np.delete(feats, 2, axis=0), np.delete(clean, 2, axis=0))
    with pytest.raises(InputError, match=r"c2.wav: ran out of memory computing its features .*on_error: skip"):
        extraction.extract(
            paths,
            digests,
            extraction.ExtractSettings(extractor="logmel", batch_clips=4),
            tmp_path / "stop",
            progress=False,
        )
    # Errors that are not allocation failures are bugs: they are raised, never skipped.
    monkeypatch.setattr(features, "logmel_frames", lambda wave, frames: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        extraction.extract(paths, digests, settings, tmp_path / "bug", progress=False)


def test_allocation_failures_are_told_from_bugs():
    """numpy's MemoryError and torch's CPU allocator error (VGGish) are allocation failures; others are not."""
    import torch  # as VGGish extraction has, when its errors arise

    assert features._out_of_memory(NUMPY_OOM)
    torch_cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: not enough memory: "
        "you tried to allocate 4294967296 bytes."
    )
    assert features._out_of_memory(torch_cpu)
    assert features._out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not features._out_of_memory(ZeroDivisionError("division by zero"))
    assert not features._out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


# --- precomputed features ---------------------------------------------------------------------


def hostile_header(path, values: int = 10**10) -> None:
    """A 136-byte .npy whose header claims `values` float32 (37 GiB at 1e10) over 8 bytes of data."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (values,)})
        handle.write(np.zeros(2, "<f4").tobytes())


def npz_bytes() -> bytes:
    buffer = bytes_io.BytesIO()
    np.savez(buffer, x=np.zeros(8, np.float32))
    return buffer.getvalue()


def truncated_npy(path) -> None:
    np.save(path, np.zeros(8, np.float32))
    path.write_bytes(path.read_bytes()[:-8])


MALFORMED = {
    # case: (writer of a1_0.npy, what the message says)
    "empty": (lambda p: np.save(p, np.zeros(0, np.float32)), "holds an empty vector (shape (0,))"),
    "matrix": (lambda p: np.save(p, np.zeros((10, 8), np.float32)), "holds an array of shape (10, 8)"),
    "scalar": (lambda p: np.save(p, np.float32(1)), "holds an array of shape ()"),
    "npz": (lambda p: p.write_bytes(npz_bytes()), "a zip archive (an .npz saved under a .npy name?)"),
    "hostile": (
        hostile_header,
        "the header declares 10,000,000,000 float32 values (37.3 GiB) but the file holds 8 bytes of data",
    ),
    "truncated": (truncated_npy, "the header declares 8 float32 values (32 bytes) but the file holds 24 bytes"),
    "complex": (lambda p: np.save(p, np.zeros(8, np.complex64)), "holds complex64 values, not real numbers"),
    "text": (lambda p: p.write_text("0.1, 0.2, 0.3\n"), "not a readable .npy array"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_precomputed_file_is_refused_from_its_header(tmp_path, case):
    write, message = MALFORMED[case]
    good, bad = tmp_path / "good.npy", tmp_path / "a1_0.npy"
    np.save(good, np.zeros(8, np.float32))
    write(bad)
    tracemalloc.start()
    with pytest.raises(InputError, match="a1_0.npy: " + re.escape(message)):
        load_precomputed([str(good), str(bad)])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # judged from the header: nothing of the declared size is allocated
    skipped: dict[int, str] = {}
    feats = load_precomputed([str(good), str(bad)], "skip", skipped)
    assert list(skipped) == [1] and skipped[1].startswith(message)
    assert np.isnan(feats[1]).all() and np.array_equal(feats[0], np.zeros(8, np.float32))


@pytest.mark.parametrize("case", ["empty", "matrix", "npz", "hostile"])
def test_malformed_precomputed_file_through_the_stage(io, dataset, case):
    write, message = MALFORMED[case]
    _precomputed(dataset, np.zeros(8, np.float32))
    write(dataset / "feats" / "a1_0.npy")
    code, err = _precomputed_pipeline(io, dataset, "stop")
    assert code == 2 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "a1_0.npy: " + message in line and "features.on_error: skip" in line
    assert not (dataset / "p.npy").exists()
    code, err = _precomputed_pipeline(io, dataset, "skip")
    assert code == 0
    skipped = pd.read_csv(dataset / "skipped.csv")
    assert skipped["file"].tolist() == ["a1_0.wav"] and message in skipped["reason"][0]
    feats = np.load(dataset / "p.npy")
    assert feats.shape == (24, 8) and np.isnan(feats[0]).all() and np.isfinite(feats[1:]).all()


def test_well_formed_vectors_of_any_real_dtype_load(tmp_path):
    for k, dtype in enumerate([np.float32, np.float64, np.int16, np.uint8]):
        np.save(tmp_path / f"{k}.npy", np.arange(4, dtype=dtype))
        assert check_npy(str(tmp_path / f"{k}.npy")) == ((4,), np.dtype(dtype))
    x = load_precomputed([str(tmp_path / f"{k}.npy") for k in range(4)])
    assert x.dtype == np.float32 and np.array_equal(x, np.tile(np.arange(4, dtype=np.float32), (4, 1)))
