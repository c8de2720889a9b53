"""The whole Snakemake workflow on a reduced demo: results, a no-op rerun, and targeted reruns."""

import pandas as pd
import pytest
import yaml

from runs import load_test_config, planned_rules, snakemake, write_config

CONFIG = load_test_config()  # .test/config/config.yaml: the reduced demo


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, CONFIG)
    out = snakemake(workdir)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def test_results_table(run):
    summary = pd.read_csv(run / "results/mini/summary.csv")
    assert set(summary["experiment"]) == {"InitEmb", "RbL"}
    assert set(summary["split"]) == {"val", "test_seen", "test_unseen"}
    assert set(summary["level"]) == {"family", "sound", "all"}  # all: spearman over the whole tree
    assert {"silhouette", "knn_acc", "knn_acc_loo", "map_at_r", "mistake_severity", "spearman", "parent_acc"} == set(
        summary["metric"]
    )
    assert set(summary["extractor"]) == {"logmel"}  # no weights here: auto fell back, and says so
    rbl = summary[summary["experiment"] == "RbL"]
    assert (rbl["n_seeds"] == 2).all()
    val = summary[(summary["split"] == "val") & (summary["metric"] == "silhouette")]
    assert len(val) == 4 and val["mean"].between(-1, 1).all()
    md = (run / "results/mini/summary.md").read_text()
    assert "Features: **logmel**" in md and "| RbL | 2 |" in md
    assert "## Silhouette" in md and "## Collapse" in md
    history = pd.read_csv(run / "results/mini/models/RbL/seed0/history.csv")
    assert list(history.columns) == ["epoch", "loss", "val_silhouette", "spread"]
    assert history["spread"].between(0, 2).all()
    # out_dim: auto, 12 sounds -> 8-d embeddings
    assert "out_dim auto: 8-d embeddings for 12 leaves" in (run / "results/mini/logs/train/RbL/seed0.log").read_text()
    for path in (
        "manifest.csv",
        "splits.csv",
        "features/auto.npy",
        "features/auto.norm.npz",
        "models/RbL/seed1/model.pt",
        "models/RbL/seed1/history.csv",
        "embeddings/InitEmb/seed0.npz",
    ):
        assert (run / "results/mini" / path).is_file(), path
    assert "logmel" in (run / "results/mini/logs/extract/0.log").read_text()


def test_metrics_plots_and_provenance(run):
    long = pd.read_csv(run / "results/mini/metrics.csv")
    assert list(long.columns[:8]) == ["dataset", "experiment", "seed", "extractor", "split", "level", "metric", "value"]
    assert {"silhouette", "knn_acc", "map_at_r", "spearman", "mistake_severity"} <= set(long["metric"])
    assert set(long.loc[long["experiment"] == "RbL", "seed"]) == {0, 1}
    for png in (
        "plots/metrics.png",
        "plots/training/RbL.png",
        "plots/embeddings/RbL/seed0_test_unseen.png",
        "plots/embeddings/InitEmb/seed0_val.png",
    ):
        assert (run / "results/mini" / png).read_bytes()[:4] == b"\x89PNG", png
    provenance = (run / "results/mini/provenance.md").read_text()
    assert "features: **logmel**" in provenance and "| torch |" in provenance and "seeds: [0, 1]" in provenance


def test_html_report_builds(run):
    out = snakemake(run, "--report", str(run / "report.html"))
    assert out.returncode == 0, out.stderr[-3000:]
    html = (run / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "Embeddings" in html and "Provenance" in html


def test_rerun_has_nothing_to_do(run):
    assert planned_rules(run) == set()


def test_changes_rerun_only_what_depends_on_them(run):
    changed = yaml.safe_load(yaml.safe_dump(CONFIG))
    changed["experiments"]["RbL"]["lr"] = 0.02
    write_config(run, changed)
    assert planned_rules(run) == {
        "train",
        "embed",
        "evaluate",
        "summarise",
        "plot_embeddings",
        "plot_training",
        "provenance",
    }
    changed = yaml.safe_load(yaml.safe_dump(CONFIG))
    changed["split"]["seed"] = 1
    write_config(run, changed)
    assert planned_rules(run) == {
        "split",
        "normalise",
        "train",
        "embed",
        "evaluate",
        "summarise",
        "plot_embeddings",
        "plot_training",
        "provenance",
    }
    write_config(run, CONFIG)
    assert planned_rules(run) == set()
