"""The authors' RbL and training loop, transcribed from their published code: the speed baseline.

Source: Nolasco & Stowell's repository for arXiv:2110.05941 (MIT licence),
github.com/inesnolas/Rank-based-loss_ICASSP22 at commit ef28580c6cf2275c3f234d1fdcf639e6b29854a4:
`loss_functions/rank_based_loss.py` (compute_pair_gt_tree_distance, pre_compute_rank_map,
compute_rank_based_loss, train_RbL), `utils/distance_functions.py`, `utils/evaluation.py`,
`models/SingleLayer_net.py` and `data_functions.py` (the Dataset); `run_example.py` gives the
settings (batch 12, lr 1e-5, output size 3, cosine distance, number_of_ranks 4 for two levels,
training DataLoader shuffle=False over a pre-shuffled CSV, validation shuffle=True). The older
top-level `rank_based_loss.py` of the same repository does not parse (`if distance = ...`).

Same operations in the same order, the same per-pair splitting of the label strings, the same
dense (ranks + 1) x pairs rank map filled one pair at a time, the same target (the r-th smallest
distance of the batch, gradient through it) and the same per-epoch work. What had to change to run
here is marked "CHANGED" where it is:

1. `device` was set only when CUDA is available (a NameError on CPU); it is the embeddings' device.
2. The 3-level branch of compute_pair_gt_tree_distance looped while i <= 3 and so raised
   IndexError for a pair with different roots; it stops at i < 3 and returns 6, as the 2-level
   branch does. A label with neither 2 nor 3 parts left `rank` unbound; it raises ValueError.
3. train_RbL: wandb logging is left out (the published version already has it commented out);
   `os` and the helpers are imported here. tqdm and print stay; callers may redirect them.
4. data_functions.py uses `os` without importing it; imported here.

`label_strings` turns this project's integer labels into the authors' "leaf_..._root" strings
(their data arrive as such strings, so callers convert once, outside any timing), and
`authors_batch_loss` is one training step's loss as train_RbL computes it.
"""

# The functions below follow the published code operation for operation, which is covered by:
#
# MIT License
#
# Copyright (c) 2021 Ines Nolas
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.

from __future__ import annotations

import itertools
import os

import numpy as np
import torch
import torch.optim as optim
import tqdm
from sklearn.metrics import silhouette_score
from torch.utils.data import Dataset


def label_strings(labels: np.ndarray | torch.Tensor) -> list[str]:
    """The authors' label strings from integer labels (N, L), coarsest first: "leaf_..._root"."""
    rows = np.asarray(labels).tolist()
    if any(code < 0 for row in rows for code in row):
        raise ValueError("the authors' code has no unknown levels: every label code must be >= 0")
    return ["_".join(str(code) for code in reversed(row)) for row in rows]


# --- loss_functions/rank_based_loss.py -------------------------------------------------------------


def compute_pair_gt_tree_distance(labels_pair_one: str, labels_pair_two: str, number_of_ranks: int) -> int:
    """Tree distance of two label strings ("leaf_root" or "leaf_mid_root"): 0, 2, 4 (or 6)."""
    if len(labels_pair_one.split("_")) == 3:
        labels_one_expanded = [
            labels_pair_one,
            labels_pair_one.split("_")[1] + "_" + labels_pair_one.split("_")[2],
            labels_pair_one.split("_")[2],
        ]
        labels_two_expanded = [
            labels_pair_two,
            labels_pair_two.split("_")[1] + "_" + labels_pair_two.split("_")[2],
            labels_pair_two.split("_")[2],
        ]
        rank = 0
        i = 0
        while i < len(labels_one_expanded):  # CHANGED (2): was i <= len(...), an IndexError at i == 3
            if labels_one_expanded[i] == labels_two_expanded[i]:
                return 2 * i
            else:
                i += 1
        rank = 6
    elif len(labels_pair_one.split("_")) == 2:
        labels_one_expanded = [labels_pair_one, labels_pair_one.split("_")[-1]]
        labels_two_expanded = [labels_pair_two, labels_pair_two.split("_")[-1]]
        rank = 0
        i = 0
        while i <= len(labels_one_expanded) - 1:
            if labels_one_expanded[i] == labels_two_expanded[i]:
                return 2 * i
            else:
                i += 1
        rank = 4
    else:  # CHANGED (2): `rank` was unbound here
        raise ValueError(f"label {labels_pair_one!r}: the authors' code takes 2 or 3 '_'-separated levels")
    return rank


def pre_compute_rank_map(number_of_ranks: int, hierarchical_labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense rank map (number_of_ranks + 1, pairs), one 1 per column, and each pair's rank."""
    pairs_indexes = torch.tensor(list(itertools.combinations(range(len(hierarchical_labels)), 2)))
    number_pairs = pairs_indexes.shape[0]
    pair_rank = torch.tensor(list(range(number_pairs))) * -1
    rank_map = torch.zeros((number_of_ranks + 1, number_pairs))
    for pair_index, (idx1, idx2) in enumerate(pairs_indexes):
        rank_index = compute_pair_gt_tree_distance(
            hierarchical_labels[idx1], hierarchical_labels[idx2], number_of_ranks
        )
        rank_map[rank_index, pair_index] = 1
        pair_rank[pair_index] = rank_index
    return rank_map, pair_rank


# --- utils/distance_functions.py -------------------------------------------------------------------


def compute_pairwise_cosine_distances(minibatch_embeddings: torch.Tensor, full_matrix: bool = False) -> torch.Tensor:
    """1 - x_i . x_j for unit-norm rows (the model normalises): upper-triangle vector or full matrix."""
    D = 1 - torch.mm(minibatch_embeddings, torch.transpose(minibatch_embeddings, 0, 1))
    if not full_matrix:
        tri_idx = torch.triu_indices(minibatch_embeddings.shape[0], minibatch_embeddings.shape[0], 1)
        return D[tri_idx[0], tri_idx[1]]
    return D


def compute_pairwise_euclidean_distances(
    minibatch_embeddings: torch.Tensor, d: int, n: int, full_matrix: bool = False
) -> torch.Tensor:
    """Euclidean distances of the columns of a (d, n) tensor, through the (d, n, n) differences."""
    X_view1 = minibatch_embeddings.reshape(d, n, 1)
    X_view2 = minibatch_embeddings.reshape(d, 1, n)
    diff_mat = X_view1 - X_view2
    D = torch.sum(diff_mat**2, dim=0)
    if not full_matrix:
        tri_idx = torch.triu_indices(n, n, 1)
        return torch.sqrt(D[tri_idx[0], tri_idx[1]])
    return torch.sqrt(D)


# --- loss_functions/rank_based_loss.py -------------------------------------------------------------


def compute_rank_based_loss(
    batch_size: int,
    minibatch_embedding_coordinates: torch.Tensor,
    minibatch_labels,
    minibatch_rank_map: torch.Tensor,
    number_of_ranks: int,
    distance: str,
):
    """RbL: (loss, target distance per pair, pair distances, 1 where a pair sits in its rank's block)."""
    device = minibatch_embedding_coordinates.device  # CHANGED (1): was 'cuda' when available, else unset

    pairs_indexes = torch.tensor(list(itertools.combinations(range(batch_size), 2))).to(device)
    number_pairs = pairs_indexes.shape[0]

    # 1 pairwise embedding distances
    if distance == "euclidean":
        embedding_pairwise_distances = compute_pairwise_euclidean_distances(
            torch.transpose(minibatch_embedding_coordinates, 0, 1).to(device),
            minibatch_embedding_coordinates.shape[1],
            batch_size,
        )
    elif distance == "cosine":
        embedding_pairwise_distances = compute_pairwise_cosine_distances(minibatch_embedding_coordinates.to(device))

    count_samples_in_each_rank = torch.sum(minibatch_rank_map, 1).reshape(number_of_ranks + 1, 1)

    # 2 sort the pairs by embedding distance
    sorted_embedding_distances_indexes = torch.argsort(embedding_pairwise_distances)
    sorted_pairs_indexes = torch.argsort(torch.argsort(embedding_pairwise_distances)).to(device)

    # 3 target distance of each rank: the rank-th smallest distance (gradient through it)
    target_distances_per_rank = torch.ones(number_of_ranks).to(device) * -1
    target_distances_per_rank = embedding_pairwise_distances[sorted_embedding_distances_indexes]
    target_distances_per_rank = target_distances_per_rank[0 : number_of_ranks + 1]

    # 4 is each pair inside its rank's block of sorted positions?
    min_position_sorted_distances_array = torch.zeros((number_of_ranks + 1, 1)).to(device)
    max_position_sorted_distances_array = torch.cumsum(count_samples_in_each_rank, 0).to(device)
    min_position_sorted_distances_array[1:] = max_position_sorted_distances_array[0:-1]

    rank_map_perpair = torch.where(torch.transpose(minibatch_rank_map, 0, 1) == 1)[1]
    target_distance_per_pair = target_distances_per_rank[rank_map_perpair]
    target_distance_per_pair = target_distance_per_pair.to(device)

    min_position_sorted_distances_array_pair = min_position_sorted_distances_array[rank_map_perpair].to(device)
    max_position_sorted_distances_array_pair = max_position_sorted_distances_array[rank_map_perpair].to(device) - 1

    I_correct_position_pairsA = (
        sorted_pairs_indexes.reshape(number_pairs, 1) <= max_position_sorted_distances_array_pair
    )
    I_correct_position_pairsB = (
        sorted_pairs_indexes.reshape(number_pairs, 1) >= min_position_sorted_distances_array_pair
    )
    I_correct_position_pairs = I_correct_position_pairsA == I_correct_position_pairsB
    I_correct_position_pairs = I_correct_position_pairs.long().to(device)

    # 5 loss per pair
    Loss_per_pair = (1 - torch.transpose(I_correct_position_pairs, 0, 1)) * (
        (embedding_pairwise_distances - target_distance_per_pair) ** 2
    )
    return torch.mean(Loss_per_pair), target_distance_per_pair, embedding_pairwise_distances, I_correct_position_pairs


def authors_batch_loss(
    embeddings: torch.Tensor, labels: list[str], number_of_ranks: int, distance: str = "cosine"
) -> torch.Tensor:
    """One step's loss as train_RbL computes it from the model's last layer output (before its L2
    normalisation, which SingleLayerHypersphereConstraint.forward applies)."""
    embeddings = torch.nn.functional.normalize(embeddings, p=2)
    minibatch_rank_map, _ = pre_compute_rank_map(number_of_ranks, hierarchical_labels=labels)
    return compute_rank_based_loss(
        embeddings.shape[0], embeddings, labels, minibatch_rank_map, number_of_ranks, distance
    )[0]


# --- utils/evaluation.py ---------------------------------------------------------------------------


def evaluate_cluster_quality_based_gt_annotations(embeddings: np.ndarray, labels_gt, distance: str = "cosine") -> float:
    """scikit-learn's silhouette score on the precomputed pairwise distance matrix."""
    if distance == "cosine":
        Pairwise_distances_between_samples = compute_pairwise_cosine_distances(
            torch.tensor(embeddings), full_matrix=True
        )
        Pairwise_distances_between_samples.fill_diagonal_(0)
        Pairwise_distances_between_samples[np.where(Pairwise_distances_between_samples <= (-1 * np.inf))] = 0
    elif distance == "euclidean":
        Pairwise_distances_between_samples = compute_pairwise_euclidean_distances(
            torch.transpose(torch.tensor(embeddings), 0, 1), embeddings.shape[1], embeddings.shape[0], full_matrix=True
        )
    return silhouette_score(
        Pairwise_distances_between_samples.detach().numpy(), labels_gt, metric="precomputed", sample_size=None
    )


# --- models/SingleLayer_net.py and data_functions.py -----------------------------------------------


class SingleLayerHypersphereConstraint(torch.nn.Module):
    """The paper's model: one linear layer and L2 normalisation; it holds its SGD optimiser."""

    def __init__(self, configs: dict) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(configs["EMBEDDINGS_SIZE"], configs["output_EMBEDDINGS_SIZE"])
        self.optimizer = optim.SGD(self.parameters(), lr=configs["LR"])

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.linear(examples)
        x = torch.nn.functional.normalize(x, p=2)
        return x


class RankBasedLossHierarchicalLabelsEmbeddings(Dataset):
    """One clip per item: its feature vector loaded from `<features_folder>/<wav name>.npy`, and its label string."""

    def __init__(self, partition_dataframe, features_folder: str, target_labels: str = "hierarchical_labels") -> None:
        self.dataset = partition_dataframe
        self.wavs_list = list(self.dataset.wavfilename)
        self.features_folder = features_folder
        self.target_labels = target_labels
        self.labels = list(self.dataset[target_labels])

    def __len__(self) -> int:
        return len(self.wavs_list)

    def __getitem__(self, idx: int):
        ID = self.wavs_list[idx][0:-4] + ".npy"
        X = np.load(os.path.join(self.features_folder, ID))  # CHANGED (4): `os` imported
        y = self.labels[idx]
        return X, y


# --- loss_functions/rank_based_loss.py -------------------------------------------------------------


def train_RbL(
    model,
    training_generator,
    validation_generator,
    output_folder: str,
    early_stopping_patience: int,
    save_embeddings_to_plot: bool,
    n_epochs: int,
    configs: dict,
    distance: str = "euclidean",
    number_of_ranks: int = 6,
) -> str:
    """Train for up to n_epochs; keep the checkpoint of the best validation average silhouette."""
    train_losses = []
    valid_losses = []

    best_avg_sils = -1 * np.inf
    best_avg_sils_epoch = 0
    temporary_best_checkpoint = ""
    plot_frame = 0

    for epoch in range(n_epochs):
        model.train()
        embeddings_plot_array = np.empty((configs["BATCH_SIZE"], configs["output_EMBEDDINGS_SIZE"]))
        labels = np.asarray([])
        embeddings_every_epoch = np.empty((configs["BATCH_SIZE"], configs["output_EMBEDDINGS_SIZE"]))
        labels_every_epoch = np.asarray([])

        train_losses = []
        valid_losses = []
        losses_to_plot = []

        process = tqdm.tqdm(training_generator, dynamic_ncols=True)
        for X_batch, y_batch in process:
            model.zero_grad()
            embeddings = model(X_batch)

            minibatch_rank_map, _ = pre_compute_rank_map(number_of_ranks, hierarchical_labels=y_batch)

            if distance == "cosine":
                loss, target_distance_per_pair, embedding_pairwise_distances, I_correct_position_pairs = (
                    compute_rank_based_loss(
                        embeddings.shape[0], embeddings, y_batch, minibatch_rank_map, number_of_ranks, distance
                    )
                )
            elif distance == "euclidean":
                loss, target_distance_per_pair, embedding_pairwise_distances, I_correct_position_pairs = (
                    compute_rank_based_loss(
                        embeddings.shape[0], embeddings, y_batch, minibatch_rank_map, number_of_ranks, distance
                    )
                )

            if save_embeddings_to_plot and epoch % 100 == 0:
                losses_to_plot.append(loss)
                embeddings_plot_array = np.concatenate((embeddings_plot_array, embeddings.detach().numpy()), axis=0)
                labels = np.concatenate((labels, np.asarray(y_batch)))

            embeddings_every_epoch = np.concatenate((embeddings_every_epoch, embeddings.detach().numpy()), axis=0)
            labels_every_epoch = np.concatenate((labels_every_epoch, np.asarray(y_batch)))

            loss.backward()
            model.optimizer.step()
            train_losses.append(loss.item())

        if save_embeddings_to_plot and epoch % 100 == 0:
            embeddings_plot_array = np.delete(embeddings_plot_array, range(configs["BATCH_SIZE"]), 0)
            with open(
                os.path.join(output_folder, "Embeddings_plot", "batch_embeddings_at_" + str(plot_frame) + ".csv"), "wb"
            ) as f:
                np.save(f, embeddings_plot_array)
            with open(os.path.join(output_folder, "Embeddings_plot", "LABELS_embeddings_to_plot.csv"), "wb") as fl:
                np.save(fl, labels)
            plot_frame = plot_frame + 1

        embeddings_every_epoch = np.delete(embeddings_every_epoch, range(configs["BATCH_SIZE"]), 0)

        # validation loop
        with torch.no_grad():
            val_embeddings_every_epoch = np.empty((configs["BATCH_SIZE"], configs["output_EMBEDDINGS_SIZE"]))
            val_labels_every_epoch = np.asarray([])

            model.eval()
            for x_val, y_val in validation_generator:
                embeddings_val = model(x_val)

                val_embeddings_every_epoch = np.concatenate(
                    (val_embeddings_every_epoch, embeddings_val.detach().numpy()), axis=0
                )
                val_labels_every_epoch = np.concatenate((val_labels_every_epoch, np.asarray(y_val)))

                minibatch_rank_map_val, _ = pre_compute_rank_map(number_of_ranks, hierarchical_labels=y_val)
                val_loss, _, _, _ = compute_rank_based_loss(
                    embeddings_val.shape[0], embeddings_val, y_val, minibatch_rank_map_val, number_of_ranks, distance
                )
                valid_losses.append(val_loss.item())

            val_embeddings_every_epoch = np.delete(val_embeddings_every_epoch, range(configs["BATCH_SIZE"]), 0)

        train_clusters_score_IDlabels = evaluate_cluster_quality_based_gt_annotations(
            embeddings_every_epoch, labels_every_epoch
        )
        labels_species_every_epoch = [l.split("_")[1] for l in labels_every_epoch]
        train_clusters_score_SPECIESlabels = evaluate_cluster_quality_based_gt_annotations(
            embeddings_every_epoch, labels_species_every_epoch
        )

        val_clusters_score_IDlabels = evaluate_cluster_quality_based_gt_annotations(
            val_embeddings_every_epoch, val_labels_every_epoch
        )
        val_labels_species_every_epoch = [l.split("_")[1] for l in val_labels_every_epoch]
        val_clusters_score_SPECIESlabels = evaluate_cluster_quality_based_gt_annotations(
            val_embeddings_every_epoch, val_labels_species_every_epoch
        )

        avg_sils = (val_clusters_score_IDlabels + val_clusters_score_SPECIESlabels) / 2
        train_loss = np.average(train_losses)
        val_loss = np.average(valid_losses)

        # CHANGED (3): wandb.log(...) left out, as in the published version
        print(
            "Epoch",
            epoch,
            ", Loss:",
            round(train_loss, 3),
            "Val_loss:",
            round(val_loss, 3),
            "silhouete_score_ID_labels:",
            train_clusters_score_IDlabels,
            "silhouette_score_species_labels",
            train_clusters_score_SPECIESlabels,
            "VAL_silhouette_score_IDlabels",
            val_clusters_score_IDlabels,
            "VAL_silhouette_score_SPECIESlabels",
            val_clusters_score_SPECIESlabels,
            "VAL_averaged_silhouette_scores:",
            avg_sils,
        )

        if avg_sils > best_avg_sils:
            checkpoint = {"net_dict": model.state_dict(), "val_loss": val_loss, "epoch": epoch}
            best_avg_sils = avg_sils
            best_avg_sils_epoch = epoch

            if os.path.isfile(temporary_best_checkpoint):
                os.remove(temporary_best_checkpoint)

            temporary_best_checkpoint = os.path.join(
                output_folder,
                "Checkpoint"
                + "_epoch"
                + str(epoch)
                + "_valloss"
                + str(round(val_loss, 2))
                + "_val_avg_sils"
                + str(round(avg_sils, 2))
                + ".pt",
            )
            print("Saving parameters to", temporary_best_checkpoint)
            torch.save(checkpoint, temporary_best_checkpoint)

        # early stopping
        if epoch > best_avg_sils_epoch + early_stopping_patience:
            return temporary_best_checkpoint

    return temporary_best_checkpoint
