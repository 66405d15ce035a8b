"""Session kNN: SKNN, V-SKNN and STAN, scored by the past sessions most similar to the current one.

* **SKNN** (Jannach & Ludewig, RecSys 2017, "When recurrent neural networks meet the
  neighborhood for session-based recommendation"): from the ``sample_size`` most recent
  training sessions that share an item with the current session, the ``k`` most similar
  by cosine similarity of the item sets, ``|A ∩ B| / sqrt(|A| |B|)``. An item scores the
  sum of the similarities of the neighbours that hold it.
* **V-SKNN** (Ludewig & Jannach, UMUAI 2018, "Evaluation of session-based recommendation
  algorithms"): as SKNN, but the current session's items are weighted by position
  (``weighting``: a later click counts more), a neighbour's contribution decays with how
  far back in the current session its most recent shared item lies (``weighting_score``),
  and an item's score is boosted by its IDF, ``score * (1 + idf * idf_weighting)``.
* **STAN** (Garg et al., SIGIR 2019): position-weighted cosine, neighbours decayed by
  age, and a neighbour's items by their distance from the shared item
  (:class:`StanNeighbours`); **V-STAN** (Ludewig et al., UMUAI 2021) adds V-SKNN's
  neighbour decay and IDF boost to it.

The definitions follow session-rec (rn5l/session-rec, ``algorithms/knn/sknn.py``,
``vsknn.py``, ``stan.py`` and ``vstan.py``) to the letter, including its weight functions (position ``i`` from 1 of a
session of ``n`` clicks; ``d`` from 1 = the last click):

    weighting   same: 1   div: i/n   quadratic: (i/n)^2   log: 1/log10(n-i+1.7)
                linear: 1 - 0.1 (n-i) for i <= 10, else 0
    weighting_score  same: 1   div: 1/d   quadratic: 1/d^2   log: 1/log10(d+1.7)
                linear: 1 - 0.1 d for d <= 100, else 0

V-SKNN's ``similarity: vec`` is ``sum of the shared items' weights / distinct items of
the current session``; ``cosine`` weighs the current session's items the same way. An
item's weight is that of its last click; IDF is ``log(sessions / clicks of the item)``.

Time: sessions are ranked by recency in the order the data holds them (RecBole's ids
follow the files, which the converters write in time order); the SR-GNN pickles have no
timestamps, so session order stands in for time there, as in the manifest. On
leave-one-out data a user's history is the session.

Deviations from session-rec: SKNN's cosine is the paper's; session-rec's ``sknn.py``
computes ``|A ∩ B| / sqrt(|A|) * sqrt(|B|)`` (operator precedence), which favours long
neighbours. Neighbours tied in similarity at the k-th place are taken most recent
first (session-rec takes them in set iteration order). Scores are not normalised by
their maximum (a ranking does not change).

Vectorised over a batch of cases with sparse matrices: no Python loop per case.

Example: ``bench run --models vsknn,sknn --datasets diginetica``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.rows import sequence_events
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


def position_weight(kind: str, i: np.ndarray, n: np.ndarray) -> np.ndarray:
    """V-SKNN's ``weighting`` of click ``i`` (from 1) of a session of ``n`` clicks."""
    i, n = np.asarray(i, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if kind == "same":
        return np.ones(np.broadcast(i, n).shape)
    if kind == "div":
        return i / n
    if kind == "quadratic":
        return (i / n) ** 2
    if kind == "log":
        return 1.0 / np.log10(n - i + 1.7)
    if kind == "linear":
        return np.where(i <= 10, 1.0 - 0.1 * (n - i), 0.0)
    raise ValueError(f"weighting must be same, div, quadratic, log or linear, not {kind!r}")


def step_decay(kind: str, d: np.ndarray) -> np.ndarray:
    """V-SKNN's ``weighting_score`` of a neighbour whose most recent shared click is ``d`` back (1 = last)."""
    d = np.asarray(d, dtype=np.float64)
    if kind == "same":
        return np.ones_like(d)
    if kind == "div":
        return 1.0 / d
    if kind == "quadratic":
        return 1.0 / (d * d)
    if kind == "log":
        return 1.0 / np.log10(d + 1.7)
    if kind == "linear":
        return np.where(d <= 100, 1.0 - 0.1 * d, 0.0)
    raise ValueError(f"weighting_score must be same, div, quadratic, log or linear, not {kind!r}")


class SessionNeighbours:
    """The training sessions as a sparse session x item membership matrix, and the
    scores of a batch of cases from their nearest sessions."""

    def __init__(self, seq_ids: np.ndarray, items: np.ndarray, n_items: int, *, k: int, sample_size: int,
                 similarity: str = "cosine", weighting: str = "same", weighting_score: str = "same",
                 idf_weighting: float = 0.0):
        if similarity not in ("cosine", "vec"):
            raise ValueError(f"similarity must be cosine or vec, not {similarity!r}")
        position_weight(weighting, 1, 1), step_decay(weighting_score, 1)  # reject unknown names now
        self.k, self.sample_size = int(k), int(sample_size)
        self.similarity, self.weighting, self.weighting_score = similarity, weighting, weighting_score
        self.idf_weighting, self.n_items = float(idf_weighting or 0.0), n_items
        # Sessions in increasing id = data order = recency; row s of X is session s's item set.
        _, session = np.unique(seq_ids, return_inverse=True)
        n_sessions = int(session.max()) + 1 if len(session) else 0
        x = sp.csr_matrix((np.ones(len(items)), (session, items)), shape=(n_sessions, n_items))
        x.data[:] = 1.0
        x.sort_indices()
        self.x, self.xt = x, x.T.tocsr()
        self.session_size = np.diff(x.indptr).astype(np.float64)
        self.member_keys = np.repeat(np.arange(n_sessions, dtype=np.int64), np.diff(x.indptr)) * n_items + x.indices
        clicks = np.bincount(items, minlength=n_items).astype(np.float64)
        with np.errstate(divide="ignore"):
            self.idf = np.where(clicks > 0, np.log(max(n_sessions, 1) / np.maximum(clicks, 1)), 0.0)

    def scores(self, item_seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """[B, n_items] scores of the cases ``item_seq`` [B, L] (0-padded after ``lengths``)."""
        b, width = item_seq.shape
        position = np.arange(1, width + 1)
        real = position[None, :] <= lengths[:, None]
        rows, cols = np.nonzero(real)
        weight = np.zeros(real.shape)
        weight[rows, cols] = position_weight(self.weighting, cols + 1, lengths[rows])  # real clicks only
        # an item clicked twice keeps the weight of its last click (session-rec's pos_map)
        query = _last_per_cell(rows, item_seq[rows, cols], weight[rows, cols], b, self.n_items)
        binary = query.copy()
        binary.data[:] = 1.0
        distinct = np.diff(binary.indptr).astype(np.float64)

        weighted = (query @ self.xt).tocsr()  # [B, sessions]: the shared items' weights
        shared = (binary @ self.xt).tocsr()  # nonzero = the session shares an item
        weighted.sort_indices()
        shared.sort_indices()
        # the sample_size most recent sharing sessions (largest ids); `weighted` may lack
        # sessions whose shared weights are all 0, so the sample is taken on `shared`
        sample = _last_per_row(shared, self.sample_size)
        sim = _values_at(weighted, sample)
        case, session = _coords(sample)
        if self.similarity == "vec":
            sim = sim / np.maximum(distinct[case], 1.0)
        else:
            norm = np.sqrt(np.asarray(query.multiply(query).sum(axis=1)).ravel())
            sim = sim / np.maximum(norm[case] * np.sqrt(self.session_size[session]), 1e-300)
        keep = sim > 0
        case, session, sim = case[keep], session[keep], sim[keep]
        case, session, sim = _top_k(case, session, sim, self.k)

        # decay: how far back is the most recent click of the case that the neighbour holds
        step = _most_recent_shared(item_seq, lengths, case, session, self.n_items, self.member_keys)
        contribution = sim * step_decay(self.weighting_score, np.maximum(step, 1))
        neighbours = sp.csr_matrix((contribution, (case, session)), shape=(b, self.x.shape[0]))
        scores = np.asarray((neighbours @ self.x).todense())
        if self.idf_weighting:
            scores *= 1.0 + self.idf[None, :] * self.idf_weighting
        return scores


def _last_per_cell(rows, cols, values, n_rows, n_cols) -> sp.csr_matrix:
    """A sparse matrix holding, for each (row, col) given several times, the value given last."""
    key = rows.astype(np.int64) * n_cols + cols
    order = np.lexsort((np.arange(len(key)), key))  # by key, then in the given order
    key, values = key[order], values[order]
    last = np.r_[key[1:] != key[:-1], True] if len(key) else np.zeros(0, dtype=bool)
    key, values = key[last], values[last]
    return sp.csr_matrix((values, (key // n_cols, key % n_cols)), shape=(n_rows, n_cols))


def _coords(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)), m.indices.astype(np.int64)


def _last_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """The last ``n`` stored entries of each row (the largest column indices: sorted indices)."""
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    from_end = m.indptr[rows + 1] - np.arange(m.nnz)  # 1 for each row's last entry
    keep = from_end <= n
    indptr = np.r_[0, np.cumsum(np.minimum(counts, n))]
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def _values_at(m: sp.csr_matrix, pattern: sp.csr_matrix) -> np.ndarray:
    """``m``'s values at ``pattern``'s stored positions (0 where ``m`` stores nothing)."""
    m_rows, m_cols = _coords(m)
    rows, cols = _coords(pattern)
    # m's keys are sorted: rows ascending, indices sorted within rows
    return _values_at_pairs(m, rows, cols, m.shape[1], m_rows * m.shape[1] + m_cols)


def _top_k(case, session, sim, k):
    """Each case's ``k`` most similar sessions; ties to the more recent (larger id)."""
    order = np.lexsort((-session, -sim, case))
    case, session, sim = case[order], session[order], sim[order]
    start = np.r_[0, np.flatnonzero(case[1:] != case[:-1]) + 1] if len(case) else np.zeros(0, np.int64)
    rank = np.arange(len(case)) - np.repeat(start, np.diff(np.r_[start, len(case)]))
    keep = rank < k
    return case[keep], session[keep], sim[keep]


def _positions(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key: whether ``sorted_keys`` holds it, and where."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys, pos


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return _positions(sorted_keys, keys)[0]


class StanNeighbours:
    """STAN (Garg et al., SIGIR 2019, "Sequence and Time Aware Neighborhood for
    Session-based Recommendations"), session-rec's ``algorithms/knn/stan.py``:

    * the current session's item ``i`` weighs ``exp((pos_i - n) / lambda_spw)`` (its last
      click ``pos_i`` of ``n``); similarity: the weighted cosine of the item sets;
    * times ``exp(-(t_now - t_s) / (lambda_snh days))`` for a neighbour last active at
      ``t_s``; time is seconds where the data has it, else the session order (session s
      at second s, the current session right after the last training session);
    * neighbour s gives item ``j`` ``sim * exp(-|p_s(j) - p_s*| / lambda_inh)``, with
      ``p_s(j)`` the last position of ``j`` in s and ``p_s*`` the last position in s of an
      item of the current session.
    """

    def __init__(self, seq_ids: np.ndarray, items: np.ndarray, n_items: int, *, k: int, sample_size: int,
                 lambda_spw: float, lambda_snh: float, lambda_inh: float,
                 lambda_ipw: float | None = None, lambda_idf: float | None = None):
        self.k, self.sample_size, self.n_items = int(k), int(sample_size), n_items
        self.lambda_spw, self.lambda_inh = float(lambda_spw), float(lambda_inh)
        self.lambda_snh = float(lambda_snh) * 24 * 3600
        # V-STAN's two V-SKNN terms (None: STAN)
        self.lambda_ipw = None if lambda_ipw is None else float(lambda_ipw)
        self.lambda_idf = None if lambda_idf is None else float(lambda_idf)
        order = np.argsort(seq_ids, kind="stable")  # events of a session stay in click order
        seq_ids, items = seq_ids[order], items[order]
        _, session = np.unique(seq_ids, return_inverse=True)
        n_sessions = int(session.max()) + 1 if len(session) else 0
        starts = np.r_[0, np.flatnonzero(np.diff(session)) + 1]
        position = np.arange(len(items)) - np.repeat(starts, np.diff(np.r_[starts, len(items)])) + 1
        # X_pos[s, j] = the last position of item j in session s (later clicks overwrite)
        self.x_pos = _last_per_cell(session, items, position.astype(np.float64), n_sessions, n_items)
        self.x_pos.sort_indices()
        self.x = self.x_pos.copy()
        self.x.data[:] = 1.0
        self.xt = self.x.T.tocsr()
        self.session_size = np.diff(self.x.indptr).astype(np.float64)
        self.member_keys = _coords(self.x)[0] * n_items + self.x.indices
        self.now = float(n_sessions)  # session order as time: the current session comes next
        self.session_time = np.arange(n_sessions, dtype=np.float64)
        clicks = np.bincount(items, minlength=n_items).astype(np.float64)
        self.idf = np.where(clicks > 0, np.log(max(n_sessions, 1) / np.maximum(clicks, 1)), 0.0)

    def scores(self, item_seq: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        b, width = item_seq.shape
        position = np.arange(1, width + 1)
        real = position[None, :] <= lengths[:, None]
        weight = np.exp((position[None, :] - lengths[:, None]) / self.lambda_spw) * real
        rows, cols = np.nonzero(real)
        query = _last_per_cell(rows, item_seq[rows, cols], weight[rows, cols], b, self.n_items)
        binary = query.copy()
        binary.data[:] = 1.0
        weighted = (query @ self.xt).tocsr()
        shared = (binary @ self.xt).tocsr()
        weighted.sort_indices()
        shared.sort_indices()
        sample = _last_per_row(shared, self.sample_size)
        case, session = _coords(sample)
        norm = np.sqrt(np.asarray(query.multiply(query).sum(axis=1)).ravel())
        sim = _values_at(weighted, sample) / np.maximum(norm[case] * np.sqrt(self.session_size[session]), 1e-300)
        sim = sim * np.exp(-(self.now - self.session_time[session]) / self.lambda_snh)
        case, session, sim = _top_k(case, session, sim, self.k)
        # p_s*: the last position in s of any item of the current session
        star = np.zeros(len(case))
        q_items = binary.indices
        q_start = binary.indptr
        for slot in range(int(np.diff(q_start).max(initial=0))):
            has = q_start[case] + slot < q_start[case + 1]
            idx = np.flatnonzero(has)
            item = q_items[q_start[case[idx]] + slot]
            pos = _values_at_pairs(self.x_pos, session[idx], item, self.n_items, self.member_keys)
            star[idx] = np.maximum(star[idx], pos)
        # every item of every neighbour, weighted by its distance to p_s*
        counts = self.session_size[session].astype(np.int64)
        pair = np.repeat(np.arange(len(case)), counts)
        offsets = np.repeat(self.x_pos.indptr[session], counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        values = sim[pair] * np.exp(-np.abs(self.x_pos.data[offsets] - star[pair]) / self.lambda_inh)
        item = self.x_pos.indices[offsets]
        if self.lambda_idf is not None:
            values = values * (1.0 + self.idf[item] * self.lambda_idf)
        if self.lambda_ipw is not None:
            # the last click of the current session that the neighbour holds, `back` from the end
            back = _most_recent_shared(item_seq, lengths, case, session, self.n_items, self.member_keys)
            values = values * np.exp(-(back[pair] - 1) / self.lambda_ipw)
        out = sp.csr_matrix((values, (case[pair], item)), shape=(b, self.n_items))
        return np.asarray(out.todense())


def _most_recent_shared(item_seq, lengths, case, session, n_items, member_keys) -> np.ndarray:
    """For each (case, neighbour session): how far back (1 = the last click) the case's most
    recent click of an item the session holds is."""
    back_of = np.zeros(len(case))
    open_ = np.ones(len(case), dtype=bool)
    for back in range(1, item_seq.shape[1] + 1):
        pos = lengths[case] - back
        valid = open_ & (pos >= 0)
        if not valid.any():
            break
        idx = np.flatnonzero(valid)
        hit = _contains(member_keys, session[idx].astype(np.int64) * n_items + item_seq[case[idx], pos[idx]])
        back_of[idx[hit]] = back
        open_[idx[hit]] = False
    return back_of


def _values_at_pairs(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, n_cols: int,
                     sorted_keys: np.ndarray) -> np.ndarray:
    """``m[rows, cols]`` (0 where not stored), ``sorted_keys`` being m's ``row * n_cols + col``."""
    found, pos = _positions(sorted_keys, rows.astype(np.int64) * n_cols + cols)
    return np.where(found, m.data[pos] if len(sorted_keys) else 0.0, 0.0)


class _SessionKNN(SequentialRecommender):
    input_type = InputType.POINTWISE
    trainable = False  # the neighbourhood index is built in the constructor
    similarity = weighting = weighting_score = None  # set by the subclass or its config

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.neighbours = self.index(config, *sequence_events(dataset))

    def index(self, config, seq_ids: np.ndarray, items: np.ndarray):
        """The neighbourhood index of the training sessions ``(seq_ids[e], items[e])``."""
        return SessionNeighbours(
            seq_ids, items, self.n_items, k=int(config["k"]), sample_size=int(config["sample_size"]),
            similarity=self.similarity or config["similarity"], weighting=self.weighting or config["weighting"],
            weighting_score=self.weighting_score or config["weighting_score"],
            idf_weighting=float(config["idf_weighting"] or 0.0))

    def calculate_loss(self, interaction):
        raise NotImplementedError("session kNN is not trained")

    cases_per_block = 512  # bounds the [cases, sessions] and [cases, items] intermediates

    def full_sort_predict(self, interaction):
        seq = interaction[self.ITEM_SEQ]
        items, lengths = seq.cpu().numpy(), interaction[self.ITEM_SEQ_LEN].cpu().numpy()
        out = np.empty((len(items), self.n_items), dtype=np.float32)
        for lo in range(0, len(items), self.cases_per_block):
            hi = lo + self.cases_per_block
            out[lo:hi] = self.neighbours.scores(items[lo:hi], lengths[lo:hi])
        return torch.from_numpy(out).to(seq.device)

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)


class BenchSKNN(_SessionKNN):
    """SKNN: cosine on item sets, every neighbour's similarity counted in full."""

    similarity, weighting, weighting_score = "cosine", "same", "same"


class BenchVSKNN(_SessionKNN):
    """V-SKNN: position-weighted current session, decayed neighbours, IDF (config keys)."""


class BenchSTAN(_SessionKNN):
    """STAN: :class:`StanNeighbours` with ``lambda_spw``, ``lambda_snh``, ``lambda_inh``."""

    vstan = False

    def index(self, config, seq_ids: np.ndarray, items: np.ndarray):
        extra = {"lambda_ipw": config["lambda_ipw"], "lambda_idf": config["lambda_idf"]} if self.vstan else {}
        return StanNeighbours(seq_ids, items, self.n_items, k=int(config["k"]), sample_size=int(config["sample_size"]),
                              lambda_spw=config["lambda_spw"], lambda_snh=config["lambda_snh"],
                              lambda_inh=config["lambda_inh"], **extra)


class BenchVSTAN(BenchSTAN):
    """V-STAN (Ludewig et al., UMUAI 2021): STAN, each neighbour also decayed by
    ``exp(-(d - 1) / lambda_ipw)`` for its most recent shared click ``d`` back (1 = last),
    and each item's score boosted by ``1 + idf * lambda_idf`` (session-rec's ``vstan.py``)."""

    vstan = True
