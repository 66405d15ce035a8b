"""SASRec: Self-Attentive Sequential Recommendation.

Kang, McAuley. ICDM 2018. https://arxiv.org/abs/1808.09781

    bench run --models sasrec,sasrec-ce --datasets beauty      (defaults: custom_models/sasrec.yaml)

A sequence of the ``n = max_len`` most recent items is embedded as ``M_s + P``
(item embedding plus a learned position embedding) and passed through ``b`` blocks
(default 2, 1 head, d = 50), each ``x + Dropout(SelfAttention(LayerNorm(x)))`` then
``x + Dropout(FFN(LayerNorm(x)))`` with the point-wise ``FFN = ReLU(x W1 + b1) W2 + b2``.
Attention is causal: the output after item ``t`` sees items ``<= t`` only. The score of
item ``i`` after position ``t`` is ``F_t . M_i`` with the SHARED item embedding.

Loss (``loss_type``):

* ``BCE`` (the paper): at every position, ``-log s(F_t . M_pos) - log(1 - s(F_t . M_neg))``
  with one negative per position, averaged over all real positions of the batch.
  The negative is drawn uniformly from all items and redrawn while it equals that
  position's target. (The paper and the authors' code draw it from the items the
  user never interacted with; we exclude only the target, which changes the draws
  that hit one of the user's other items, |S_u| / n_items of them, and needs no
  per-user item sets.)
* ``CE``: full softmax over all items at every position (Klenitskiy & Vasilev,
  RecSys 2023, "Turning dross into gold loss: is BERT4Rec really better than SASRec?").
* ``sampled``: softmax over ``n_negatives`` popularity negatives with logQ correction
  (:class:`custom_models.per_position.PopularitySampledSoftmax`).

Positions: the paper left-pads a sequence to ``n`` items, so the most recent item
always gets position embedding ``P_n``. RecBole left-aligns rows and pads at the end;
we keep RecBole's layout but give item ``t`` of a sequence of length ``len`` the
position ``n - len + t``, the position it has in the paper. Padding is after every
real item, so causal attention alone keeps it from real positions; padding outputs
are zeroed after every block, as in the authors' code.

Deviations and choices the paper leaves open (following the authors' TensorFlow code
where the paper is silent):

* item embeddings are scaled by ``sqrt(d)`` before the position embedding is added
  (authors' code); a final LayerNorm follows the last block (authors' code);
* dropout (``dropout_prob``, 0.2; the paper uses 0.2 on MovieLens-1M and 0.5 on the
  sparser Beauty, Games and Steam) on the embedding sum, the attention weights, inside the FFN
  and on each block's output;
* the residual adds the block input ``x`` as in the paper's equation; the authors'
  code adds the LayerNorm-ed input and normalises the queries but not the keys;
* weights are Xavier-normal initialised; no L2 on embeddings (authors' default 0);
* Adam uses RecBole's betas (0.9, 0.999), not the authors' (0.9, 0.98);
* it trains on whole sequences with a loss at every position (``train_on =
  "sequences"``), as the paper does; on RecBole's prefix rows every position would
  be counted again in each longer prefix.
  ``train_batch_size: 128`` counts whole sequences as in the paper (``batch_unit:
  sequences``); ``batch_unit: targets`` packs sequences into batches of about that
  many positions (:mod:`bench.batching`), the unit RecBole's prefix rows use;
  ``batch_unit: iid_targets`` draws that many positions at random across all rows, as
  RecBole's shuffled prefix rows are, and ``targets_per_row: G`` draws them ``G`` a row
  (``G`` times fewer encoder passes an epoch).

This file is plain PyTorch and runs on any device; on CPU the full-softmax loss and
the full ranking's product come from :mod:`custom_models.cpu.ops` (oneDNN, same values,
through :mod:`custom_models.per_position`), and the dropout masks (not the attention
weights' dropout inside ``scaled_dot_product_attention``) from
:mod:`custom_models.cpu.dropout` (same distribution, another random stream).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import bench.compat  # noqa: F401
from custom_models.cpu.dropout import swap_dropouts
from custom_models.per_position import (SharedEmbeddingScores, init_weights, loss_mask_of, loss_start_of,
                                         make_softmax_loss, position_targets)
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


class CausalSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over positions ``<= t`` (no output projection, as in the paper)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden_size {d} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape

        def heads(t):
            return t.view(batch, length, self.n_heads, d // self.n_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return out.transpose(1, 2).reshape(batch, length, d)


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.attention_norm, self.attention = nn.LayerNorm(d, eps=1e-8), CausalSelfAttention(d, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class BenchSASRec(SharedEmbeddingScores, SequentialRecommender):
    train_on = "sequences"
    input_type = InputType.POINTWISE  # RecBole samples no negatives; we draw our own

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["hidden_size"]
        self.max_len = int(dataset.field2seqlen[self.ITEM_SEQ])  # n: the converter's max_len
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_len, d)
        self.embedding_dropout = nn.Dropout(config["dropout_prob"])
        self.blocks = nn.ModuleList(Block(d, config["n_heads"], config["dropout_prob"]) for _ in range(config["n_layers"]))
        self.final_norm = nn.LayerNorm(d, eps=1e-8)

        self.loss_type = config["loss_type"]
        self.softmax_loss = None if self.loss_type == "BCE" else make_softmax_loss(config, dataset, self.n_items)
        if self.n_items < 3 and self.loss_type == "BCE":
            raise ValueError("BCE needs at least two items to draw a negative different from the target")

        init_weights(self, self.item_embedding)
        swap_dropouts(self)  # on CPU the masks come from a C kernel (custom_models.cpu.dropout)

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """``F_t`` after every position: [B, L, d]. Positions ``>= item_seq_len`` are 0."""
        length = item_seq.size(1)
        t = torch.arange(length, device=item_seq.device).view(1, -1)
        real = (t < item_seq_len.view(-1, 1)).unsqueeze(-1)
        # the paper's position of item t: left-padded to n items, the last item is at n - 1
        positions = (self.max_len - item_seq_len.view(-1, 1) + t).clamp(0, self.max_len - 1)
        x = self.item_embedding(item_seq) * math.sqrt(self.item_embedding.embedding_dim) + self.position_embedding(positions)
        x = self.embedding_dropout(x) * real
        for block in self.blocks:
            x = block(x) * real
        return self.final_norm(x) * real

    def last_representation(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.gather_indexes(self.forward(item_seq, item_seq_len), item_seq_len - 1)

    def uniform_negatives(self, targets: torch.Tensor) -> torch.Tensor:
        """One item per target, uniform over the items 1..n_items-1 other than the target.

        One of the other n_items - 2 items is drawn and the ones from the target on are
        shifted up by one: the paper's redraw-while-equal distribution, in one draw (no
        loop that waits for a GPU)."""
        negatives = torch.randint(1, self.n_items - 1, targets.shape, device=targets.device)
        return negatives + (negatives >= targets).long()

    # -- RecBole interface ----------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        """Mean loss over every real position of whole-sequence rows."""
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        inputs, targets, real = position_targets(interaction[self.ITEM_SEQ], item_seq_len,
                                                 interaction[self.POS_ITEM_ID], loss_start_of(interaction),
                                                 loss_mask_of(interaction))
        output, targets = self.forward(inputs, item_seq_len)[real], targets[real]
        if self.softmax_loss is not None:
            return self.softmax_loss(output, targets, self.item_embedding.weight)
        positive = (output * self.item_embedding(targets)).sum(-1)
        negative = (output * self.item_embedding(self.uniform_negatives(targets))).sum(-1)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative)).mean()
