"""Metric-learning losses over hierarchical labels, each called as `loss(embeddings, labels)`.

`labels` is an integer tensor (N, L): one column per taxonomy level, coarsest first, -1 where a
level is unknown.
"""

from rbl.losses.distances import pairwise_distance
from rbl.losses.rank import RankBasedLoss, rank_based_loss

__all__ = ["RankBasedLoss", "pairwise_distance", "rank_based_loss"]
