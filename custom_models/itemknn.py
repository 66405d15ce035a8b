"""Item-KNN: the items that co-occur most with the session's last item.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, Section 4.2: "Item-KNN: Items similar to the actual item are recommended
... similarity is defined as the cosine similarity between the vector of their
sessions ... Regularization is also included to avoid coincidental high similarities
of rarely visited items."

With S_i the set of training sessions holding item i, as defined in the paper
("the number of co-occurrences of two items in sessions divided by the square root
of the product of the numbers of sessions in which the individual items are
occurring", plus GRU4Rec's support regulariser lambda):

    sim(i, j) = |S_i ∩ S_j| / ((|S_i| + lambda) ** alpha * (|S_j| + lambda) ** (1 - alpha))

``knn_lambda`` = lambda (20, GRU4Rec's default), ``knn_alpha`` = alpha (0.5 = cosine,
1 = association-rule confidence). sim(i, i) = 0. Each item keeps its
``knn_neighbours`` (100, GRU4Rec's ``n_sims``) most similar items, ties to the lower
item id; the rest score 0. A case is scored by the row of its LAST item; items never
co-occurring with it score 0 (and tie).

``knn_count_repeats: True`` follows GRU4Rec's own ``baselines.ItemKNN`` code instead:
an item clicked twice in a session counts twice, in |S_i| (its number of training
events) and in the co-occurrence (the product of the two items' click counts in each
session, i.e. X^T X for the sessions x items count matrix X). The two agree on
sessions without repeated clicks.

Deviations: none known. The neighbour cut changes no metric at K <= knn_neighbours
except the tie rank of items scored 0. On the full SR-GNN Diginetica split
(``python -m bench.benchmarks.baselines_diginetica``) the paper's definition gives
Recall@20 / MRR@20 37.23 / 11.97 and GRU4Rec's code 36.13 / 11.09, fitted on all
training sessions (34.63 / 11.11 on the harness's training split, without the 10% of
sessions held out for validation); SR-GNN's table (from NARM) reports 35.75 / 11.57.

Example: ``run_once("itemknn", "diginetica", 0, "runs/itemknn", {"knn_lambda": 20})``.
"""
import numpy as np
import scipy.sparse as sp
import torch

from bench.rows import sequence_events
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


def item_similarity(seq_ids: np.ndarray, items: np.ndarray, n_items: int, lam: float, alpha: float,
                    neighbours: int | None, count_repeats: bool = False) -> sp.csr_matrix:
    """Row i = the regularised cosine similarities of item i to its ``neighbours`` best items,
    from the training events ``(seq_ids[e], items[e])``."""
    n_seq = int(seq_ids.max()) + 1 if len(seq_ids) else 0
    x = sp.csr_matrix((np.ones(len(items), dtype=np.float64), (seq_ids, items)), shape=(n_seq, n_items))
    if not count_repeats:
        x.data[:] = 1.0  # the constructor summed repeated clicks: back to session membership
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    support = np.asarray(x.sum(axis=0)).ravel() + lam
    rows = np.repeat(np.arange(n_items), np.diff(co.indptr))
    co.data = co.data / (support[rows] ** alpha * support[co.indices] ** (1.0 - alpha))
    if neighbours is not None:
        co = _top_per_row(co, neighbours)
    return co.astype(np.float32)


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (ties to the lower column index)."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, rows))  # by row, then similarity desc, then item id
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = np.sort(order[rank < k])  # positions, still grouped by row
    indptr = np.r_[0, np.cumsum(np.bincount(rows[keep], minlength=m.shape[0]))]
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


class BenchItemKNN(SequentialRecommender):
    input_type = InputType.POINTWISE
    trainable = False  # the similarity is computed in the constructor

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        seq_ids, items = sequence_events(dataset)
        neighbours = config["knn_neighbours"]
        self.similarity = item_similarity(seq_ids, items, self.n_items, float(config["knn_lambda"]),
                                          float(config["knn_alpha"]), None if neighbours is None else int(neighbours),
                                          bool(config["knn_count_repeats"]))

    def calculate_loss(self, interaction):
        raise NotImplementedError("Item-KNN is not trained")

    def full_sort_predict(self, interaction):
        lengths = interaction[self.ITEM_SEQ_LEN].view(-1, 1)
        last = interaction[self.ITEM_SEQ].gather(1, lengths - 1).squeeze(1)
        scores = self.similarity[last.cpu().numpy()].toarray()
        return torch.from_numpy(scores).to(last.device)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)
