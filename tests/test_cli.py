"""The stages through the `rbl` command line, as the workflow calls them."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from rbl.cli import main
from rbl.demo import generate
from rbl.weight_files import CNN_FILENAME, PCA_FILENAME

from runs import logmel_extract_args
from test_vggish_model import random_pca, random_state_dict


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    generate(root / "demo", clips_per_class=2, seed=1)
    code = main(
        [
            "--quiet",
            "ingest",
            "--taxonomy",
            str(root / "demo/taxonomy.csv"),
            "--annotations",
            str(root / "demo/annotations.csv"),
            "--audio-root",
            str(root / "demo/audio"),
            "--out-manifest",
            str(root / "manifest.csv"),
            "--out-taxonomy",
            str(root / "taxonomy.csv"),
        ]
    )
    assert code == 0
    return root


def extract(root, manifest, out, extractor="logmel", weights="none", verify="true", precision="float32"):
    return main(
        [
            "--quiet",
            "extract",
            "--manifest",
            str(manifest),
            "--extractor",
            extractor,
            "--weights-dir",
            str(weights),
            "--download",
            "false",
            "--final-relu",
            "true",
            "--verify",
            verify,
            "--precision",
            precision,
            "--batch-clips",
            "4",
            "--workers",
            "2",
            "--device",
            "cpu",
            "--cache-dir",
            str(root / "cache"),
            "--out",
            str(out) + ".npy",
            "--info",
            str(out) + ".json",
        ]
    )


def test_help_lists_the_stages(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for stage in ("demo", "ingest", "split", "extract", "normalise", "train", "embed", "evaluate", "summarise"):
        assert stage in text


def test_manifest_hashes_every_clip(ingested):
    manifest = pd.read_csv(ingested / "manifest.csv", keep_default_na=False)
    assert len(manifest) == 24 and manifest["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert (manifest["sound"] == "").sum() == 2  # the demo's two incomplete labels


def test_extract_cache_computes_only_new_clips(ingested):
    manifest = pd.read_csv(ingested / "manifest.csv", keep_default_na=False)
    manifest.iloc[:20].to_csv(ingested / "first.csv", index=False)
    assert extract(ingested, ingested / "first.csv", ingested / "a") == 0
    info = json.loads((ingested / "a.json").read_text())
    assert (info["extractor"], info["computed"], info["from_cache"]) == ("logmel", 20, 0)
    assert extract(ingested, ingested / "manifest.csv", ingested / "b") == 0
    info = json.loads((ingested / "b.json").read_text())
    assert (info["computed"], info["from_cache"]) == (4, 20)
    a, b = np.load(ingested / "a.npy"), np.load(ingested / "b.npy")
    assert b.shape == (24, 336) and np.array_equal(a, b[:20]) and np.isfinite(b).all()


def test_features_do_not_depend_on_the_batch_size(ingested):
    """Batches are decoded one ahead of the compute: every clip still lands in its own row."""
    manifest = ingested / "manifest.csv"
    rows = {}
    for batch in ("1", "5", "24"):
        out = ingested / f"batch{batch}"
        args = logmel_extract_args(manifest, ingested / f"cache_batch{batch}", out, batch_clips=batch, workers=2)
        assert main(args) == 0
        rows[batch] = np.load(f"{out}.npy")
    for batch in ("5", "24"):  # batched frontends may differ in float32 rounding, nothing more
        np.testing.assert_allclose(rows[batch], rows["1"], rtol=1e-5, atol=1e-5)
    assert len(np.unique(rows["1"], axis=0)) == 24  # distinct clips: a row swap would not go unnoticed


def test_vggish_without_weights_fails_with_instructions(ingested, capsys):
    code = extract(
        ingested, ingested / "manifest.csv", ingested / "v", extractor="vggish", weights=ingested / "no-weights"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "VGGish weights missing" in err and "vggish-10086976.pth" in err and "logmel" in err


def test_auto_falls_back_to_logmel_and_says_so(ingested):
    assert (
        extract(
            ingested, ingested / "manifest.csv", ingested / "auto", extractor="auto", weights=ingested / "no-weights"
        )
        == 0
    )
    info = json.loads((ingested / "auto.json").read_text())
    assert info["extractor"] == "logmel" and "unavailable" in info["reason"]


def test_vggish_extraction_with_generated_weights(ingested):
    weights = ingested / "weights"
    weights.mkdir()
    torch.save(random_state_dict(), weights / CNN_FILENAME)
    torch.save(random_pca(), weights / PCA_FILENAME)
    # Generated weights cannot carry the official hashes: the real checks refuse them...
    assert extract(ingested, ingested / "manifest.csv", ingested / "v", "vggish", weights) == 2
    # ...and load through the same loader when verification is switched off.
    assert extract(ingested, ingested / "manifest.csv", ingested / "v", "vggish", weights, verify="false") == 0
    info = json.loads((ingested / "v.json").read_text())
    feats = np.load(ingested / "v.npy")
    assert info["extractor"] == "vggish" and info["computed"] == 24
    # Mean of quantised 0..255 PCA outputs per clip.
    assert feats.shape == (24, 128) and feats.min() >= 0 and feats.max() <= 255
    # The CNN in bfloat16: features of their own in the cache, close to float32's.
    for _ in range(2):
        assert (
            extract(
                ingested,
                ingested / "manifest.csv",
                ingested / "b",
                "vggish",
                weights,
                verify="false",
                precision="bfloat16",
            )
            == 0
        )
        info_bf16 = json.loads((ingested / "b.json").read_text())
        assert info_bf16["computed"] + info_bf16["from_cache"] == 24
    assert info_bf16["from_cache"] == 24 and info_bf16["cache_dir"] != info["cache_dir"]
    bf16 = np.load(ingested / "b.npy")
    assert not np.array_equal(bf16, feats)
    relative = np.linalg.norm(bf16 - feats, axis=1) / np.linalg.norm(feats, axis=1)
    assert relative.max() < 1e-2


def test_sharded_extraction_gathers_to_the_unsharded_result(ingested):
    manifest = ingested / "manifest.csv"
    assert extract(ingested, manifest, ingested / "whole") == 0
    parts = []
    for k in range(3):
        out = ingested / f"part{k}"
        args = ["--shard", str(k), "--shards", "3"]
        assert main(logmel_extract_args(manifest, ingested / "cache2", out, *args)) == 0
        parts.append(out)
    assert (
        main(
            [
                "--quiet",
                "gather",
                "--manifest",
                str(manifest),
                "--parts",
                *[f"{p}.npy" for p in parts],
                "--infos",
                *[f"{p}.json" for p in parts],
                "--out",
                str(ingested / "gathered.npy"),
                "--info",
                str(ingested / "gathered.json"),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(ingested / "gathered.npy"), np.load(ingested / "whole.npy"))
    info = json.loads((ingested / "gathered.json").read_text())
    assert (info["n_clips"], info["computed"], info["shards"]) == (24, 24, 3)


def test_progress_bars_in_a_log_file_update_every_30_seconds(tmp_path, monkeypatch):
    """stderr redirected to a log (Snakemake's jobs): tqdm draws every 30 s, not on every update."""
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    assert (
        main(
            [
                "normalise",
                "--features",
                str(tmp_path / "none.npy"),
                "--manifest",
                "m",
                "--splits",
                "s",
                "--out",
                str(tmp_path / "o.npz"),
            ]
        )
        == 2
    )
    assert os.environ["TQDM_MININTERVAL"] == "30"
    monkeypatch.setenv("TQDM_MININTERVAL", "5")  # a user's own setting wins
    main(
        [
            "normalise",
            "--features",
            str(tmp_path / "none.npy"),
            "--manifest",
            "m",
            "--splits",
            "s",
            "--out",
            str(tmp_path / "o.npz"),
        ]
    )
    assert os.environ["TQDM_MININTERVAL"] == "5"
