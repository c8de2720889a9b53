"""Metric-learning losses over hierarchical labels, each called as `loss(embeddings, labels)`.

`labels` is an integer tensor (N, L): one column per taxonomy level, coarsest first, -1 where a
level is unknown.
"""

from rbl.losses.distances import pairwise_distance
from rbl.losses.quadruplet import QuadrupletLoss
from rbl.losses.rank import RankBasedLoss, rank_based_loss
from rbl.losses.triplet import TripletLoss

__all__ = ["QuadrupletLoss", "RankBasedLoss", "TripletLoss", "pairwise_distance", "rank_based_loss"]
