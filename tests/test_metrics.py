import math

import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_samples, silhouette_score

from rbl.metrics import mean_silhouette, silhouette, silhouette_per_level, silhouette_samples_cosine


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 4, size=40)
    y[0] = 9  # a class of one: scores 0, as scikit-learn
    got = silhouette_samples_cosine(torch.tensor(x), torch.tensor(y), chunk=7).numpy()
    np.testing.assert_allclose(got, silhouette_samples(x, y, metric="cosine"), atol=1e-10)
    value, reason = silhouette(torch.tensor(x), torch.tensor(y))
    assert value == pytest.approx(silhouette_score(x, y, metric="cosine")) and reason == ""


def test_silhouette_hand_case():
    # Two tight, opposite clusters: a = 0, b = 2 for every sample -> silhouette 1.
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert silhouette(x, torch.tensor([0, 0, 1, 1]))[0] == pytest.approx(1.0)


def test_unknown_labels_are_left_out_and_undefined_levels_explained():
    x = torch.randn(6, 3)
    labels = torch.tensor([[0, 0], [0, 1], [0, -1], [0, 2], [0, -1], [0, 3]])
    (coarse, why_coarse), (fine, why_fine) = silhouette_per_level(x, labels)
    assert math.isnan(coarse) and "1 class" in why_coarse
    assert math.isnan(fine) and "fewer classes than examples" in why_fine
    assert math.isnan(mean_silhouette(x, labels))
