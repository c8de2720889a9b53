"""The summary's headline silhouette table and its collapse report; the embedding-size rule; the
training history's spread and collapse warning."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from rbl.experiment import TrainSettings
from rbl.model import embedding_size
from rbl.summary import collapse_markdown, collapsed_runs, long_table, markdown, read_summary, summarise
from rbl.train import fit, spread

REPO = Path(__file__).resolve().parents[1]


def _history(spreads, sils):
    return pd.DataFrame({"epoch": np.arange(len(spreads)), "loss": np.nan, "val_silhouette": sils, "spread": spreads})


def test_collapsed_runs_names_each_run_below_the_threshold():
    histories = {
        "RbL/seed0": _history([1.0, 0.5, 0.05, 0.01], [0.1, 0.3, 0.2, 0.1]),
        "RbL/seed1": _history([1.0, 0.9, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4]),
        "old/seed0": _history([1.0, 0.9], [0.1, 0.2]).drop(columns="spread"),
    }
    table = collapsed_runs(histories, threshold=0.1)
    assert list(table["run"]) == ["RbL/seed0"]
    row = table.iloc[0]
    assert (row["first_epoch"], row["lowest_spread"], row["kept_epoch"], row["kept_spread"]) == (2, 0.01, 1, 0.5)
    text = collapse_markdown(table, runs=3, threshold=0.1)
    assert "1 of 3 runs collapsed" in text and "| RbL/seed0 | 2 | 0.0100 | 1 | 0.5000 |" in text
    assert "No run" in collapse_markdown(collapsed_runs(histories, 0.001), runs=3, threshold=0.001)


def test_summary_markdown_starts_with_the_silhouette_table():
    results = [
        {
            "dataset": "d",
            "experiment": exp,
            "seed": seed,
            "extractor": "logmel",
            "metrics": [
                {"split": split, "level": level, "metric": "silhouette", "value": value, "reason": ""}
                for split in ("test_seen", "test_unseen")
                for level, value in (("family", 0.1 * seed), ("sound", 0.2))
            ],
        }
        for exp, seeds in (("InitEmb", [0]), ("RbL", [1, 2]))
        for seed in seeds
    ]
    text = markdown(summarise(long_table(results)), "t")
    head = text.split("## Silhouette")[1].split("##")[0]
    assert (
        "| experiment | seeds | test_seen family | test_seen sound | test_unseen family | test_unseen sound |" in head
    )
    assert "| RbL | 2 | 0.150 ± 0.071 (+0.150) | 0.200 ± 0.000 (+0.000) |" in head


def test_summary_markdown_has_one_table_per_split_and_level(tmp_path):
    metrics = {
        "family": ["silhouette", "knn_acc", "knn_acc_loo", "map_at_r", "parent_acc"],
        "instrument": ["silhouette", "knn_acc", "knn_acc_loo", "map_at_r", "mistake_severity"],
        "all": ["spearman"],
    }
    results = [
        {
            "dataset": "d",
            "experiment": exp,
            "seed": seed,
            "extractor": "logmel",
            "metrics": [
                {"split": split, "level": level, "metric": metric, "value": 0.5 + 0.1 * seed, "reason": ""}
                for split in ("val", "test_unseen")
                for level, names in metrics.items()
                for metric in names
            ],
        }
        for exp, seeds in (("InitEmb", [0]), ("RbL", [1, 2]))
        for seed in seeds
    ]
    table = summarise(long_table(results))
    text = markdown(table, "t")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# t",
        "## Silhouette",
        "## val",
        "### val: family",
        "### val: instrument",
        "### val: all levels",
        "## test_unseen",
        "### test_unseen: family",
        "### test_unseen: instrument",
        "### test_unseen: all levels",
    ]
    sections = text.split("### ")
    family = next(s for s in sections if s.startswith("test_unseen: family"))
    assert "| experiment | seeds | silhouette | knn_acc | knn_acc_loo | map_at_r | parent_acc |" in family
    assert "| RbL | 2 | 0.650 ± 0.071 (+0.150) | 0.650 ± 0.071 (+0.150) |" in family
    assert "| experiment | seeds | spearman |\n|---|---|---|\n| InitEmb | 1 | 0.500 |" in text
    # No table is wider than the experiment, the seeds and one level's metrics (or the headline).
    widths = [line.count("|") - 1 for line in text.splitlines() if line.startswith("| experiment")]
    assert max(widths[1:]) == 2 + 5 and widths[0] == 2 + 2 * 2
    # summary.csv read back renders the same text.
    table.to_csv(tmp_path / "summary.csv", index=False)
    assert markdown(read_summary(tmp_path / "summary.csv"), "t") == text


@pytest.mark.parametrize(
    "leaves, size", [(1, 8), (9, 8), (16, 8), (17, 16), (32, 16), (36, 32), (64, 32), (70, 64), (1000, 64)]
)
def test_embedding_size_rule(leaves, size):
    assert embedding_size(leaves, 128) == size
    assert embedding_size(leaves, 5) == 5  # never more than the input


def test_paper_configs_keep_the_papers_settings():
    experiments = yaml.safe_load((REPO / "config/tut2016.yaml").read_text())["experiments"]
    paper = experiments["RbL_paper"]
    assert (
        paper["loss"],
        paper["target"],
        paper["distance"],
        paper["optimizer"],
        paper["lr"],
        paper["batch_size"],
        paper["patience"],
        paper["out_dim"],
        paper["sampler"],
    ) == ("rank", "reference", "cosine", "sgd", 1e-5, 12, 20, 3, "balanced")
    assert all(e.get("out_dim") == 3 for name, e in experiments.items() if e["loss"] != "none")


def test_history_records_spread_and_collapse_is_warned(caplog):
    rng = np.random.default_rng(0)
    labels = np.array([[c // 2, c] for c in range(4) for _ in range(6)])
    x = rng.standard_normal((len(labels), 8)).astype(np.float32) + labels[:, 1:] * 1.5
    settings = TrainSettings(optimizer="adam", lr=0.01, max_epochs=3, patience=3, out_dim=3)
    with caplog.at_level(logging.WARNING, logger="rbl.train"):
        checkpoint, history = fit(x, labels, x, labels, settings, 0, torch.device("cpu"), progress=False)
    assert not caplog.records  # threshold 0: never warned
    assert list(history.columns) == ["epoch", "loss", "val_silhouette", "spread"]
    assert history["spread"].between(0, 2).all()
    assert checkpoint["spread"] == history["spread"].iloc[checkpoint["epoch"]]
    with caplog.at_level(logging.WARNING, logger="rbl.train"):
        fit(x, labels, x, labels, settings, 0, torch.device("cpu"), progress=False, collapse_spread=2.5)
    assert len(caplog.records) == 1 and "collapsing" in caplog.records[0].getMessage()


def test_spread_is_the_mean_pairwise_distance():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert spread(x, "cosine") == pytest.approx((1 + 2 + 1) / 3)
    assert spread(x, "euclidean") == pytest.approx((2**0.5 + 2 + 2**0.5) / 3)
    assert spread(torch.ones(3, 2), "cosine") == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="out_dim"):
        fit(
            x.numpy(),
            np.zeros((3, 1), dtype=np.int64),
            x.numpy(),
            np.zeros((3, 1), dtype=np.int64),
            TrainSettings(),
            0,
            torch.device("cpu"),
            progress=False,
        )
