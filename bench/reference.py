"""RecBole 1.2.1's own models as reference rows, adapted to run on our protocols.

``recbole:<Name>`` in a suite resolves here (:func:`reference_class`): to the adapter
below where one exists, else to RecBole's class unchanged. Each adapter keeps the
class NAME of the RecBole model it wraps, so RecBole's ``Config`` still loads that
model's own YAML defaults (it looks them up by ``cls.__name__``) and its ``ModelType``.
Settings the harness needs on top of RecBole's defaults live in
``bench/reference_defaults/<Name>.yaml`` (:func:`reference_config_files`).

What every reference row shares with ours: the same cases, the one evaluator, no
masking of seen items (RecBole masks them for general models inside its own trainer;
our evaluator calls ``full_sort_predict`` directly and masks nothing).

Why adapters are needed: the converted files hold one row per prefix
(``session_id/user_id, item_id_list, item_id``). For a *general* model RecBole builds
a plain ``Dataset`` from them: the user is the session and the interactions are the
rows' targets. In the session protocol every test session is new, so a model that
scores by user id (BPR, ItemKNN) would score test cases with untrained rows. The
adapters score such cases from the case's own items, as the GRU4Rec paper does, and
are built from every training event (:func:`bench.data.sequence_events`), the first
item of each sequence included, which no row holds as a target.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

import bench.compat  # noqa: F401
from bench.data import read_manifest
from bench.errors import InputError
from bench.rows import sequence_events
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.general_recommender.bpr import BPR as _RecBoleBPR
from recbole.model.general_recommender.itemknn import ComputeSimilarity
from recbole.model.general_recommender.itemknn import ItemKNN as _RecBoleItemKNN
from recbole.model.general_recommender.pop import Pop as _RecBolePop

DEFAULTS_DIR = Path(__file__).with_name("reference_defaults")


def protocol_of(config) -> str:
    """``session`` or ``leave-one-out``, from the converted dataset's manifest."""
    data_path = Path(config["data_path"])  # RecBole made it data_root/name
    return read_manifest(data_path.name, data_path.parent)["protocol"]


def training_matrix(dataset, n_users: int, n_items: int) -> sp.csr_matrix:
    """users (sequences) x items, every training event counted (repeats summed, as
    RecBole's ``inter_matrix`` does when the same pair occurs twice)."""
    seq_ids, items = sequence_events(dataset)
    ones = np.ones(len(items), dtype=np.float32)
    return sp.csr_matrix((ones, (seq_ids, items)), shape=(n_users, n_items))


def case_matrix(item_lists: torch.Tensor, n_items: int) -> sp.csr_matrix:
    """One row per case: counts of the items in its ``item_id_list`` (padding 0 dropped)."""
    lists = item_lists.cpu().numpy()
    rows = np.repeat(np.arange(len(lists)), lists.shape[1])
    cols = lists.ravel()
    keep = cols != 0
    data = np.ones(int(keep.sum()), dtype=np.float32)
    return sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(len(lists), n_items))


class Pop(_RecBolePop):
    """RecBole's ``Pop``, with exact counts.

    RecBole's ``calculate_loss`` counts ``item_cnt[item] += 1`` by fancy-index
    assignment, so an item counts at most once per batch, and it counts the sampled
    negatives of a pointwise loader as if they were clicks. Here the counts are made
    once, in the constructor, from every training event (``trainable = False``); the
    scores are RecBole's (``count / max count``, the same for every case). On both
    protocols this row ranks exactly as our ``pop``.
    """

    trainable = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        _, items = sequence_events(dataset)
        counts = np.bincount(items, minlength=self.n_items)
        self.item_cnt = torch.as_tensor(counts, dtype=torch.long, device=self.device).view(-1, 1)
        self.max_cnt = torch.max(self.item_cnt, dim=0)[0]


class ItemKNN(_RecBoleItemKNN):
    """RecBole's ``ItemKNN`` (cosine of item columns, ``k`` neighbours, ``shrink``),
    built from every training event and scored without user ids where sessions are new.

    * The similarity is RecBole's own ``ComputeSimilarity`` on the sequences x items
      matrix of all training events (repeats summed), not on the rows' targets only.
    * Session protocol: a case is scored as RecBole scores a user,
      ``x . W``, but ``x`` counts the items of the case's ``item_id_list`` instead of a
      (never trained) session's row. All the session's items vote, not only the last
      one as in our ``itemknn`` (the GRU4Rec baseline), and the normalisation is
      RecBole's plain cosine (``shrink``) instead of GRU4Rec's support regulariser.
    * Leave-one-out: RecBole's ``pred_mat[user]`` (the user's training items . W).
    * Nothing is trained (``trainable = False``), so RecBole's scipy matrices in
      ``other_parameter`` are never written to or read from a checkpoint (our
      weights-only checkpoint load would refuse them). RecBole's ``pred_mat`` over
      every session is not built in the session protocol (it is never used).
    """

    trainable = False

    def __init__(self, config, dataset):
        GeneralRecommender.__init__(self, config, dataset)  # RecBole's __init__ builds what we replace
        self.k, self.method, self.shrink = config["k"], config["knn_method"], config["shrink"] or 0.0
        if self.method != "item":
            raise InputError(f"recbole:ItemKNN runs with knn_method: item only (got {self.method!r})")
        self.session_protocol = protocol_of(config) == "session"
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]
        self.interaction_matrix = training_matrix(dataset, self.n_users, self.n_items)
        _, self.w = ComputeSimilarity(self.interaction_matrix, topk=self.k, shrink=self.shrink,
                                      method="item").compute_similarity()
        self.w = self.w.tocsr()
        self.pred_mat = None if self.session_protocol else self.interaction_matrix.dot(self.w).tocsr()
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))
        self.other_parameter_name = ["w", "pred_mat"]

    def full_sort_predict(self, interaction):
        if self.session_protocol:
            scores = case_matrix(interaction[self.ITEM_SEQ], self.n_items).dot(self.w)
        else:
            scores = self.pred_mat[interaction[self.USER_ID].cpu().numpy()]
        return torch.from_numpy(scores.toarray()).to(self.device).view(-1)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction).view(len(interaction), -1)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)


class BPR(_RecBoleBPR):
    """RecBole's ``BPR`` (embedding 64, xavier init, BPR loss, RecBole's sampler), with a
    session represented by the mean of its items' embeddings in the session protocol.

    * Session protocol: the user embedding is dropped (every test session is new).
      In training and testing, the "user" vector of a row is the mean of the item
      embeddings of its ``item_id_list``, as the GRU4Rec paper folds a session into
      BPR-MF; trained on every training prefix with RecBole's one uniform negative
      (its sampler avoids the session's own targets). This is our ``bprmf`` up to
      RecBole's initialisation, embedding size and sampler.
    * Leave-one-out: plain RecBole BPR on the user embedding, trained on the rows'
      (user, target) pairs: the first item of each user's training sequence is never
      a positive, as no row holds it as a target.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.session_protocol = protocol_of(config) == "session"
        self.ITEM_SEQ = self.ITEM_ID + config["LIST_SUFFIX"]
        if self.session_protocol:
            self.user_embedding = None

    def user_vector(self, interaction):
        if not self.session_protocol:
            return self.get_user_embedding(interaction[self.USER_ID])
        items = interaction[self.ITEM_SEQ]
        present = (items != 0).unsqueeze(-1).float()  # RecBole's item 0 row is not zero: mask it
        return (self.item_embedding(items) * present).sum(1) / present.sum(1).clamp(min=1)

    def calculate_loss(self, interaction):
        user_e = self.user_vector(interaction)
        pos_e = self.get_item_embedding(interaction[self.ITEM_ID])
        neg_e = self.get_item_embedding(interaction[self.NEG_ITEM_ID])
        return self.loss((user_e * pos_e).sum(dim=1), (user_e * neg_e).sum(dim=1))

    def predict(self, interaction):
        return (self.user_vector(interaction) * self.get_item_embedding(interaction[self.ITEM_ID])).sum(dim=1)

    def full_sort_predict(self, interaction):
        return (self.user_vector(interaction) @ self.item_embedding.weight.t()).view(-1)


ADAPTERS = {cls.__name__: cls for cls in (Pop, ItemKNN, BPR)}

REFERENCE_NOTES = {
    "recbole:Pop": "exact training counts (RecBole counts an item at most once per batch and counts "
                   "sampled negatives); ranks exactly as our POP",
    "recbole:ItemKNN": "RecBole's cosine kNN (k=100) over all training events; session protocol: scored "
                       "from all of the case's items (x.W), not a never-trained session id",
    "recbole:BPR": "session protocol: session = mean of its items' embeddings (test sessions are new); "
                   "leave-one-out: plain RecBole BPR by user id",
    "recbole:NARM": "RecBole's NARM unchanged (CE loss, no sampler), trained on every prefix",
    "recbole:SASRec": "RecBole's SASRec unchanged (its default CE loss, no sampler; the paper uses BCE), "
                      "trained on every prefix",
    "recbole:GRU4Rec": "RecBole's GRU4Rec (Tan et al. 2016: padded prefixes, CE), not Hidasi's "
                       "session-parallel GRU4Rec",
}
"""One line per reference row: how it differs from plain RecBole 1.2.1 (or from the
paper), printed beside the row in reports. No masking of seen items applies to all."""


def reference_class(name: str) -> type:
    """The class behind ``recbole:<name>``: our adapter if any, else RecBole's own."""
    if name in ADAPTERS:
        return ADAPTERS[name]
    from recbole.utils import get_model

    return get_model(name)  # ValueError if RecBole has no such model


def reference_config_files(name: str) -> tuple[str, ...]:
    """Our settings for RecBole's model ``name`` (above RecBole's YAML), if any."""
    path = DEFAULTS_DIR / f"{name}.yaml"
    return (str(path),) if path.is_file() else ()
