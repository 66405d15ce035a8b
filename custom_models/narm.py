"""NARM: Neural Attentive Session-based Recommendation.

Li, Ren, Chen, Ren, Lian, Ma. CIKM 2017. https://doi.org/10.1145/3132847.3132926

    bench run diginetica --models narm       (defaults: custom_models/narm.yaml)

A GRU reads the session's items (embedding 50, 100 units). After item ``t``:

* global context ``c_g = h_t``, the last hidden state;
* local context ``c_l = sum_{j<=t} alpha_tj h_j`` with ``alpha_tj = v^T sigmoid(A1 h_t + A2 h_j)``
  (not normalised, as in the paper);
* ``c = [c_g; c_l]`` and ``score_i = emb_i^T B c`` (bi-linear decoder, shared item embedding);
* dropout 0.25 on the item embeddings and 0.5 on ``c``; Adam 1e-3, batch 512,
  full-softmax cross-entropy.

How it trains: the paper, like RecBole, trains on every prefix of every session as a
separate padded row. Because the GRU is causal and ``alpha_tj`` only looks at
``j <= t``, the representation of a prefix is the one at its last position in the whole
session, so the GRU runs once over a whole row and the local attention is computed
for the positions that have a loss (``train_on = "sequences"``). By default
(``batch_unit: iid_targets``, :mod:`bench.batching`) a batch is still the paper's 512
prefixes drawn i.i.d.: the rows that hold them are encoded once, and only the drawn
positions are attended from and get a loss.

This file is the plain PyTorch model and runs on any device (cuDNN's GRU on a GPU). On
CPU, :mod:`custom_models.cpu.narm` replaces ``hidden_states`` and ``position_contexts``
with a packed GRU and a C kernel for the local attention (same outputs and gradients,
``tests/test_cpu_paths.py``), and :mod:`custom_models.cpu.dropout` draws the dropout
masks (same distribution, another random stream).

Deviations and choices the paper leaves open:

* the GRU has no biases, as in the paper's GRU equations (RecBole too). With biases
  the hidden state carries a constant that lets the decoder learn item popularity
  first; on a Diginetica slice that held validation Recall@20 at POP's level for 10
  epochs, while the bias-free GRU reached 3x it. ``gru_bias: true`` adds them, as the
  public PyTorch NARM (Wang-Shuo) has them;
* weights are Xavier-normal initialised, the GRU's by PyTorch's default as in RecBole's
  NARM (the paper does not say). ``weight_init: pytorch`` keeps PyTorch's defaults
  everywhere, item embeddings N(0, 1), as the public PyTorch NARM does;
* item 0 is RecBole's padding and is never a softmax candidate;
* ``loss_type: sampled`` (not in the paper) replaces the full softmax by
  ``n_negatives`` popularity-sampled negatives with logQ correction
  (:class:`custom_models.per_position.PopularitySampledSoftmax`).
"""
from __future__ import annotations

import torch
from torch import nn

import bench.compat  # noqa: F401
from custom_models.cpu import narm as cpu_path
from custom_models.cpu.dropout import swap_dropouts
from custom_models.per_position import (SharedEmbeddingScores, init_weights, loss_mask_of, loss_start_of,
                                         make_softmax_loss, position_targets)
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


class BenchNARM(SharedEmbeddingScores, SequentialRecommender):
    train_on = "sequences"
    input_type = InputType.POINTWISE  # RecBole samples no negatives; any loss_type is ours
    # Largest [rows, queries, keys, hidden] block of the local attention built at once (training).
    attention_block_elements = 1 << 22
    # Blocks kept from forward for backward, up to this many numbers in all (128 MB);
    # the others are rebuilt in backward.
    attention_keep_elements = 1 << 25

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        embedding_size, hidden_size = config["embedding_size"], config["hidden_size"]
        embedding_dropout, context_dropout = config["dropout_probs"]

        self.item_embedding = nn.Embedding(self.n_items, embedding_size, padding_idx=0)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        # the paper's equations have no GRU biases; two options (unset by default, so stored
        # runs keep their config) build the public PyTorch NARM's model instead
        gru_bias = bool(config["gru_bias"]) if "gru_bias" in config else False
        weight_init = (config["weight_init"] if "weight_init" in config else None) or "xavier"
        if weight_init not in ("xavier", "pytorch"):
            raise ValueError(f"NARM's weight_init is xavier or pytorch, not {weight_init!r}")
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True, bias=gru_bias)
        self.A1 = nn.Linear(hidden_size, hidden_size, bias=False)  # applied to h_t (the query)
        self.A2 = nn.Linear(hidden_size, hidden_size, bias=False)  # applied to h_j
        self.v = nn.Linear(hidden_size, 1, bias=False)
        self.context_dropout = nn.Dropout(context_dropout)
        self.B = nn.Linear(2 * hidden_size, embedding_size, bias=False)
        self.softmax_loss = make_softmax_loss(config, dataset, self.n_items)

        # The GRU keeps PyTorch's own initialisation, as RecBole's NARM does: with Xavier
        # there it learned less per epoch (Diginetica-format data, H200: validation
        # MRR@20 .128 against .171 after 2 epochs).
        if weight_init == "xavier":
            init_weights(self, self.item_embedding, keep_default=(self.gru,))
        else:  # the public code's decoder is Linear(embedding, 2 * hidden): PyTorch's bound 1/sqrt(fan_in) of that
            nn.init.uniform_(self.B.weight, -embedding_size ** -0.5, embedding_size ** -0.5)
        swap_dropouts(self)  # on CPU the masks come from a C kernel (custom_models.cpu.dropout)

    # -- encoder: the paper's equations in plain PyTorch (any device) -----------------
    def hidden_states(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """GRU states ``h_t`` after every position: [B, L, H]; 0 after a row's end."""
        fast = cpu_path.hidden_states(self, item_seq, item_seq_len)
        if fast is not None:
            return fast
        # the GRU is causal and padding follows a row's items: the padded run gives the
        # packed run's states (as RecBole's NARM runs it), with no lengths copied to the host
        hidden = self.gru(self.embedding_dropout(self.item_embedding(item_seq)))[0]
        real = torch.arange(item_seq.size(1), device=item_seq.device).view(1, -1) < item_seq_len.view(-1, 1)
        return hidden * real.unsqueeze(-1)

    def contexts_at(self, hidden: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor):
        """``(c_g, c_l)`` after position ``positions[k]`` of row ``rows[k]`` of ``hidden`` [B, L, H]:

        ``c_g = h_t`` and ``c_l = sum_{j<=t} alpha_tj h_j`` with
        ``alpha_tj = v^T sigmoid(A1 h_t + A2 h_j)``, each [N, H]. Only the queried
        positions are attended from: a batch of 512 i.i.d. targets costs [512, L, H],
        not [rows, L, L, H] for every position of every row.
        """
        keys = hidden.index_select(0, rows)  # h_j of each query's row: [N, L, H]
        global_context = keys[torch.arange(len(rows), device=hidden.device), positions]  # h_t
        alpha = self.v(torch.sigmoid(self.A1(global_context).unsqueeze(1) + self.A2(keys))).squeeze(-1)  # [N, L]
        visible = torch.arange(hidden.size(1), device=hidden.device).view(1, -1) <= positions.view(-1, 1)  # j <= t
        local_context = ((alpha * visible).unsqueeze(1) @ keys).squeeze(1)
        return global_context, local_context

    def position_contexts(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor,
                          wanted: torch.Tensor | None = None):
        """``(c_g, c_l, cells)``: the global and local context [cells, H] at the positions
        ``wanted`` [B, L] (default: every real position), and the positions' flat indices
        in ``item_seq`` (the CPU path's order may differ: the caller selects by ``cells``)."""
        fast = cpu_path.position_contexts(self, item_seq, item_seq_len, wanted)
        if fast is not None:
            return fast
        hidden = self.hidden_states(item_seq, item_seq_len)
        if wanted is None:
            wanted = torch.arange(item_seq.size(1), device=item_seq.device).view(1, -1) < item_seq_len.view(-1, 1)
        rows, positions = wanted.nonzero(as_tuple=True)
        global_context, local_context = self.contexts_at(hidden, rows, positions)
        return global_context, local_context, rows * item_seq.size(1) + positions

    def _decode(self, global_context: torch.Tensor, local_context: torch.Tensor) -> torch.Tensor:
        """``B c`` with ``c = [c_g; c_l]`` (dropout on ``c``): the representation scored against every item."""
        return self.B(self.context_dropout(torch.cat([global_context, local_context], dim=-1)))

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """The representation ``B c`` after every position: [B, L, embedding_size].

        Position ``t`` sees items ``<= t`` only; positions ``>= item_seq_len`` are 0.
        """
        global_context, local_context, cells = self.position_contexts(item_seq, item_seq_len)
        out = global_context.new_zeros(item_seq.numel(), self.B.out_features)
        out[cells] = self._decode(global_context, local_context)
        return out.view(*item_seq.shape, -1)

    def last_representation(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """The representation after the last real item: [B, embedding_size]."""
        hidden = self.hidden_states(item_seq, item_seq_len)
        rows = torch.arange(item_seq.size(0), device=item_seq.device)
        return self._decode(*self.contexts_at(hidden, rows, item_seq_len - 1))

    # -- RecBole interface ----------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        """Mean cross-entropy over every real position of whole-sequence rows."""
        # longest rows first (the loss is a mean over positions: row order is free), so
        # the rows still running at any position are the first ones
        item_seq_len, order = interaction[self.ITEM_SEQ_LEN].sort(descending=True)
        start, mask = loss_start_of(interaction), loss_mask_of(interaction)
        inputs, targets, real = position_targets(interaction[self.ITEM_SEQ][order], item_seq_len,
                                                 interaction[self.POS_ITEM_ID][order],
                                                 None if start is None else start[order],
                                                 None if mask is None else mask[order])
        global_context, local_context, cells = self.position_contexts(inputs, item_seq_len, real)
        targets = targets.view(-1).index_select(0, cells)
        return self.softmax_loss(self._decode(global_context, local_context), targets, self.item_embedding.weight)
