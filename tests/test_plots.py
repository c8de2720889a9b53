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
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the scatter and the key panel
    ax, key = fig.axes
    assert ax.name == projection and not key.axison
    assert "RbL seed 0, test_seen" in ax.get_title() and "100 of 120 points" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    if dim != 3:
        assert ax.get_xlabel().startswith("PC1")
    texts = [t for t in _legend_texts(fig) if t]
    # Each family's heading, then its instruments; points of unknown instrument; unlabelled last.
    assert texts == [
        "brass",
        "horn",
        "trumpet",
        "(instrument unknown)",
        "strings",
        "violin",
        "cello",
        "(instrument unknown)",
        "unlabelled",
    ]
    fig.savefig(tmp_path / "emb.png")
    assert (tmp_path / "emb.png").stat().st_size > 0


def test_plot_embeddings_one_level_lists_the_classes():
    rng = np.random.default_rng(2)
    labels = (np.arange(40) % 3)[:, None]
    fig = plot_embeddings(rng.normal(size=(40, 8)), labels, [["a", "b", "c"]], ["scene"], "one level")
    assert [t for t in _legend_texts(fig) if t] == ["a", "b", "c"]


@pytest.mark.parametrize("dim", [3, 64])
def test_plot_embeddings_key_names_all_70_classes_readably(tmp_path, dim):
    """The instruments corpus: 10 families x 7 instruments. Every instrument is in the key, under
    its family's heading (same column, in the family's colour, a marker of its own within the
    family), in text no smaller than 8 pt, and the key overlaps neither the scatter nor the edge."""
    rng = np.random.default_rng(3)
    fine = np.arange(1400) % 70
    labels = np.stack([fine // 7, fine], axis=1)
    families = [f"family {i}" for i in range(10)]
    instruments = [f"instrument {i} of family {i // 7}" for i in range(70)]
    emb = rng.normal(size=(70, dim))[fine] + 0.2 * rng.normal(size=(1400, dim))
    fig = plot_embeddings(emb, labels, [families, instruments], LEVELS, "seventy")
    fig.savefig(tmp_path / "emb70.png")
    fig.canvas.draw()  # at the figure's own dpi: the positions below are final
    ax, key = fig.axes
    legend = key.get_legend()
    texts = {t.get_text(): t for t in legend.get_texts() if t.get_text()}
    handles = {h.get_label(): h for h in legend.legend_handles if h.get_label()}
    assert sorted(texts) == sorted(families + instruments)
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    scatter_box = ax.get_window_extent(renderer)
    for family_code, family in enumerate(families):
        heading = texts[family]
        assert heading.get_fontweight() == "bold"
        colour = heading.get_color()
        members = [instruments[i] for i in range(70) if i // 7 == family_code]
        assert len({handles[m].get_marker() for m in members}) == 7
        column = heading.get_window_extent(renderer)
        for member in members:
            assert handles[member].get_color() == colour
            box = texts[member].get_window_extent(renderer)
            assert abs(box.x0 - column.x0) < 1 and box.y1 <= column.y0 + 1  # below its heading
    for text in texts.values():
        assert text.get_fontsize() >= 8
        box = text.get_window_extent(renderer)
        assert box.x0 >= scatter_box.x1 and box.x1 <= figure_box.x1 and box.y0 >= 0 and box.y1 <= figure_box.y1


def test_plot_training_curves(tmp_path):
    epochs = np.arange(6)
    frame = pd.DataFrame(
        {
            "epoch": epochs,
            "loss": [np.nan, 1.0, 0.8, 0.7, 0.6, 0.55],
            "val_silhouette": [0.1, 0.2, 0.3, 0.35, 0.34, 0.33],
            "spread": [1.0, 0.9, 0.5, 0.2, 0.05, 0.01],
        }
    )
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
                rows.append(
                    {
                        "dataset": "demo",
                        "experiment": experiment,
                        "extractor": "vggish",
                        "split": split,
                        "level": level,
                        "metric": metric,
                        "mean": np.nan if undefined else 0.5,
                        "std": np.nan if n_seeds == 1 else 0.05,
                        "n_seeds": n_seeds,
                        "delta_vs_InitEmb": 0.0,
                    }
                )
    fig = plot_metric_bars(pd.DataFrame(rows))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split()[0] for ax in visible] == ["silhouette", "knn_acc", "spearman"]
    assert all(ax.get_ylabel() for ax in visible)
    assert _legend_texts(fig) == ["InitEmb (1 seed)", "RbL (3 seeds)"]
    knn = visible[1]
    assert len(knn.patches) == 2  # val bars only; test_unseen is undefined
    assert "n/a" in [t.get_text() for t in knn.texts]
    fig.savefig(tmp_path / "bars.png")
