"""BPR-MF: item factors trained by BPR; a session is the mean of its items' factors.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, Section 4.2: "BPR-MF ... one of the commonly used matrix factorization
methods. It optimizes for a pairwise ranking objective function via SGD. Matrix
factorization cannot be applied directly to session-based recommendations, because
the new sessions do not have feature vectors precomputed. However we can overcome this
by using the average of item feature vectors of the items that had occurred in the
session so far as the user feature vector." BPR: Rendle et al., UAI 2009.

    s = mean of V[j] over the items j of the case's item_id_list
    score(i) = s . V[i]
    loss = -log sigmoid(score(target) - score(negative))    (mean over the batch)
           + reg_weight * (|s|^2 + |V[target]|^2 + |V[negative]|^2) / 2

Training rows are the training prefixes (every prefix with its next item), one
negative each, drawn uniformly from all items inside ``calculate_loss`` (it may
rarely equal the target: that pair has zero gradient). Optimiser: RecBole's
(Adam by default).

Deviation: the paper trains MF with one factor vector per training session and only
folds a test session in as the mean of its item factors. Here training uses the same
mean as testing, so the factors are learnt for the way they are used and no session id
is ever needed. ``separate_input_factors: True`` gives the session side its own item
table (asymmetric, FISM-like) instead of the paper's one set of item factors.

Example: ``run_once("bprmf", "diginetica", 0, "runs/bprmf", {"embedding_size": 64})``.
"""
import torch
from torch import nn
import torch.nn.functional as F

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


class BenchBPRMF(SequentialRecommender):
    input_type = InputType.PAIRWISE
    train_on = "prefixes"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["embedding_size"]
        self.reg_weight = float(config["reg_weight"])
        self.item_factors = nn.Embedding(self.n_items, d, padding_idx=0)
        self.input_factors = nn.Embedding(self.n_items, d, padding_idx=0) if config["separate_input_factors"] else None
        for table in (self.item_factors, self.input_factors):
            if table is not None:
                nn.init.normal_(table.weight, std=config["init_std"])
                with torch.no_grad():
                    table.weight[0].zero_()

    def session_vector(self, interaction):
        """Mean of the (input) factors of the items in ``item_id_list`` (padding rows are 0)."""
        items, lengths = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        table = self.item_factors if self.input_factors is None else self.input_factors
        return table(items).sum(dim=1) / lengths.clamp(min=1).unsqueeze(1)

    def forward(self, interaction):
        return self.session_vector(interaction)

    def calculate_loss(self, interaction):
        session = self.session_vector(interaction)
        pos = interaction[self.ITEM_ID]
        neg = torch.randint(1, self.n_items, pos.shape, device=pos.device)
        pos_e, neg_e = self.item_factors(pos), self.item_factors(neg)
        loss = -F.logsigmoid((session * (pos_e - neg_e)).sum(dim=1)).mean()
        if self.reg_weight:
            squares = session.pow(2).sum(1) + pos_e.pow(2).sum(1) + neg_e.pow(2).sum(1)
            loss = loss + self.reg_weight * squares.mean() / 2
        return loss

    def predict(self, interaction):
        return (self.session_vector(interaction) * self.item_factors(interaction[self.ITEM_ID])).sum(dim=1)

    def full_sort_predict(self, interaction):
        return self.session_vector(interaction) @ self.item_factors.weight.t()
