"""POP: recommend the items most often seen in training, to every session alike.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, Section 4.2: "POP: Popularity predictor that always recommends the most
popular items of the training set."

The score of an item is its number of events in the training sequences: every click,
repeats included, the first item of each sequence included (``sequence_events``).
Items never seen in training score 0 and tie. Deviations: none. GRU4Rec's own code
keeps only the 100 most popular items; that changes no metric at K <= 100.

Example: ``run_once("pop", "diginetica", 0, "runs/pop")``.
"""
import numpy as np
import torch

from bench.rows import sequence_events
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


def item_counts(dataset, n_items: int) -> torch.Tensor:
    """Training events per item, ``[n_items]`` (index 0, the padding, is 0). float32, as
    the evaluator ranks: integers are exact in it up to 2**24."""
    _, items = sequence_events(dataset)
    return torch.as_tensor(np.bincount(items, minlength=n_items), dtype=torch.float32)


class BenchPOP(SequentialRecommender):
    input_type = InputType.POINTWISE
    trainable = False  # counted in the constructor

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.register_buffer("counts", item_counts(dataset, self.n_items))

    def calculate_loss(self, interaction):
        raise NotImplementedError("POP is not trained")

    def full_sort_predict(self, interaction):
        return self.counts.expand(len(interaction), -1)

    def predict(self, interaction):
        return self.counts[interaction[self.ITEM_ID]]
