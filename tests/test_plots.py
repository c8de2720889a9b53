import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rbl.plots import plot_embeddings, plot_metric_bars, plot_training_curves

NAMES = [["brass", "strings"], ["horn", "trumpet", "violin", "cello"]]
LEVELS = ["family", "instrument"]


def _embeddings(dim: int, n: int = 120):
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 4, size=n)
    labels = np.stack([fine // 2, fine], axis=1)
    labels[:5, 1] = -1  # incomplete labels
    labels[5:7] = -1  # unlabelled
    emb = rng.normal(size=(4, dim))[fine] + 0.3 * rng.normal(size=(n, dim))
    return emb, labels


def _legend_texts(fig: Figure) -> list[str]:
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


@pytest.mark.parametrize("dim, projection", [(3, "mollweide"), (128, "rectilinear"), (1, "rectilinear")])
def test_plot_embeddings(tmp_path, dim, projection):
    emb, labels = _embeddings(dim)
    fig = plot_embeddings(emb, labels, NAMES, LEVELS, "RbL seed 0, test_seen", max_points=100)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.name == projection
    assert "RbL seed 0, test_seen" in ax.get_title() and "100 of 120 points" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    if dim != 3:
        assert ax.get_xlabel().startswith("PC1")
    texts = _legend_texts(fig)
    assert {"brass / horn", "brass / trumpet", "strings / violin", "strings / cello"} <= set(texts)
    assert "unlabelled" in texts
    fig.savefig(tmp_path / "emb.png")
    assert (tmp_path / "emb.png").stat().st_size > 0


def test_plot_embeddings_many_fine_classes_legend_names_families():
    rng = np.random.default_rng(1)
    fine = np.arange(200) % 50
    labels = np.stack([fine // 10, fine], axis=1)
    names = [[f"f{i}" for i in range(5)], [f"c{i}" for i in range(50)]]
    fig = plot_embeddings(rng.normal(size=(200, 3)), labels, names, LEVELS, "many")
    assert _legend_texts(fig) == names[0]


def test_plot_training_curves(tmp_path):
    epochs = np.arange(6)
    frame = pd.DataFrame({"epoch": epochs, "loss": [np.nan, 1.0, 0.8, 0.7, 0.6, 0.55],
                          "val_silhouette": [0.1, 0.2, 0.3, 0.35, 0.34, 0.33],
                          "spread": [1.0, 0.9, 0.5, 0.2, 0.05, 0.01]})
    old = frame.drop(columns="spread")  # a history written before the spread was recorded
    fig = plot_training_curves({"RbL/seed0": frame, "RbL/seed1": frame, "QuadL/seed0": old}, collapse_spread=0.1)
    loss, sil, spread = fig.axes
    assert loss.get_xlabel() == sil.get_xlabel() == spread.get_xlabel() == "epoch"
    assert "loss" in loss.get_title().lower() and "silhouette" in sil.get_title().lower()
    assert "spread" in spread.get_title().lower() and "collapse" in spread.get_title().lower()
    assert len(loss.get_lines()) == 3
    # Two spread curves (the old history has none) and each run's best-epoch dot.
    curves = [line for line in spread.get_lines() if len(line.get_xdata()) == len(epochs)]
    assert len(curves) == 2
    np.testing.assert_array_equal(curves[0].get_ydata(), frame["spread"])
    shaded = spread.patches[0].get_extents()
    assert shaded.height > 0  # the collapse band below 0.1
    assert _legend_texts(fig) == ["RbL (2 runs)", "QuadL (1 run)"]
    fig.savefig(tmp_path / "curves.png")


def test_plot_metric_bars(tmp_path):
    rows = []
    for experiment, n_seeds in (("InitEmb", 1), ("RbL", 3)):
        for split in ("val", "test_unseen"):
            for metric, level in (("silhouette", "family"), ("knn_acc", "instrument"), ("spearman", "all")):
                undefined = metric == "knn_acc" and split == "test_unseen"
                rows.append({"dataset": "demo", "experiment": experiment, "extractor": "vggish", "split": split,
                             "level": level, "metric": metric, "mean": np.nan if undefined else 0.5,
                             "std": np.nan if n_seeds == 1 else 0.05, "n_seeds": n_seeds, "delta_vs_InitEmb": 0.0})
    fig = plot_metric_bars(pd.DataFrame(rows))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split()[0] for ax in visible] == ["silhouette", "knn_acc", "spearman"]
    assert all(ax.get_ylabel() for ax in visible)
    assert _legend_texts(fig) == ["InitEmb (1 seed)", "RbL (3 seeds)"]
    knn = visible[1]
    assert len(knn.patches) == 2  # val bars only; test_unseen is undefined
    assert "n/a" in [t.get_text() for t in knn.texts]
    fig.savefig(tmp_path / "bars.png")
