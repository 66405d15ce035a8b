"""S-POP: the items most often clicked in the current session, ties broken by popularity.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016, Section 4.2: "S-POP: This baseline recommends the most popular items of
the current session. The recommendation list changes during the session as items gain
more events. Ties are broken up using global popularity values."

score(i) = count of i in the case's item_id_list * (max_pop + 1) + pop(i),
where pop is POP's training count: the session count always dominates and popularity
only breaks its ties. The session is the case's ``item_id_list``: its most recent
``max_len`` (50) items. The scores are integers, so they stay exact in the evaluator's
float32 while ``max_len * (max_pop + 1) < 2**24`` (Diginetica: 50 * 912).
Deviations: none. GRU4Rec's own code gives popularity only to the 100 most popular
items (others score 0 outside the session); that changes no metric at K <= 100.

Example: ``run_once("spop", "diginetica", 0, "runs/spop")``.
"""
import warnings

import torch

from custom_models.pop import BenchPOP


class BenchSPOP(BenchPOP):
    trainable = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.scale = float(self.counts.max()) + 1
        if self.max_seq_length * self.scale + self.scale >= 2**24:
            warnings.warn("S-POP scores exceed float32's exact integers: popularity may not break every tie")

    def full_sort_predict(self, interaction):
        items = interaction[self.ITEM_SEQ]
        in_session = torch.zeros(len(items), self.n_items, device=items.device)
        in_session.scatter_add_(1, items, torch.ones_like(items, dtype=in_session.dtype))
        in_session[:, 0] = 0  # padding
        return in_session.mul_(self.scale).add_(self.counts)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)
