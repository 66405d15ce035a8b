"""GRU4Rec: session-based recommendations with recurrent neural networks.

Hidasi, Karatzoglou, Baltrunas, Tikk. ICLR 2016. https://arxiv.org/abs/1511.06939
Hidasi, Karatzoglou. CIKM 2018 (TOP1-max, BPR-max, more negatives). https://arxiv.org/abs/1706.03847
Behaviour checked against the authors' PyTorch code (hidasib/GRU4Rec_PyTorch_Official).

    bench run --models gru4rec --datasets diginetica      (defaults: custom_models/gru4rec.yaml,
                                                 the official Diginetica parameters)

A GRU (``layers``, e.g. [512]) reads a session one item at a time; after item ``t``
every item ``i`` gets the score ``r_i = h_t . W_y[i] + b_y[i]``.

Training (:mod:`custom_models.gru4rec_trainer`) is the paper's, not RecBole's:

* session-parallel mini-batches: ``train_batch_size`` lanes each walk through one
  session event by event (input: the current item, target: the next); when a lane's
  session ends, the next unused session takes the lane and the lane's hidden state is
  reset to zero. By default sessions are taken in time order (= row order of the
  converted data), as in the official code's ``time_sort``; ``session_order`` can
  shuffle them every epoch (the official ``train_random_order``) or feed the longest
  first, which keeps every lane busy on long user histories. One pass per epoch.
* the scores of a mini-batch are computed for the ``B`` targets of the mini-batch
  (each row's target, and the other rows' targets as its negatives) plus
  ``n_sample`` extra items drawn ∝ count^``sample_alpha``, one draw shared by the
  whole mini-batch and pre-drawn in large chunks;
* losses on the ``B x (B + n_sample)`` score matrix ``R`` (row ``k``'s target is
  column ``k``; every other column is a negative ``j``), after ``final_act``:

  - ``top1``:      mean_j  sigmoid(r_j - r_i) + sigmoid(r_j^2)
  - ``bpr``:       mean_j  -log sigmoid(r_i - r_j)
  - ``top1-max``:  sum_j s_j (sigmoid(r_j - r_i) + sigmoid(r_j^2))
  - ``bpr-max``:   -log sum_j s_j sigmoid(r_i - r_j)  +  bpreg * sum_j s_j r_j^2
  - ``cross-entropy``: -log softmax(R)_i over all B + n_sample columns (no final_act),
    optionally with logQ correction ``r_j - logq * log q_j``,

  where ``s = softmax`` over the row's negatives. The sum over rows is divided by
  ``train_batch_size``;
* dropout ``dropout_p_embed`` on the input embedding and ``dropout_p_hidden`` on each
  layer's output, which is also the state carried to the next step (as in the
  official code);
* Adagrad with momentum, lazily (row-wise) updated for embedding rows
  (:class:`custom_models.gru4rec_trainer.AdagradM`);
* weights uniform in ``±sqrt(6 / (fan_in + fan_out))``, per gate; biases zero.

The official PyTorch code offers cross-entropy and BPR-max only; TOP1, BPR and
TOP1-max follow the original Theano code and the papers.

Input embedding: ``constrained_embedding: True`` uses the output item embedding
``W_y`` as input embedding; otherwise ``embedding > 0`` is a separate input embedding,
and ``embedding: 0`` is the one-hot input (its GRU input weights are a lookup table).

Deviations and choices:

* item 0 is RecBole's padding; items absent from the training sessions are outside
  the model (as in the official code, whose item map holds training items only):
  they are never sampled and score ``-inf``;
* TOP1 and BPR average over the negatives only (the papers' definition); the Theano
  code also averages in the target's own column, which changes the loss by a
  constant factor and offset only;
* scores are ranked before the final activation (official PyTorch behaviour; for
  ``elu``/``tanh``/``linear`` this is the same ranking, for ``relu`` it avoids ties);
* ``calculate_loss`` (RecBole's API, unused by the session-parallel trainer) is the
  full-softmax cross-entropy at every position of whole-sequence rows; because the
  GRU is causal that equals the loss over all prefix rows (see the tests);
* evaluation scores each test prefix from a zero state (our one evaluator asks for
  every prefix separately); the official code walks test sessions session-parallel,
  which gives the same hidden states.

This file is plain PyTorch and runs on any device. On CPU (float32) the matrix
products, the item-row lookups and the GRU cells come from :mod:`custom_models.cpu.ops`
(oneDNN products, one coalesced row-sparse gradient: the same arithmetic, about 1.6x
faster per mini-batch here), BPR-max with its gradient from the C kernel
``kernels/bpr_max.c`` (:mod:`custom_models.cpu.gru4rec`), and the dropout masks from
:mod:`custom_models.cpu.dropout` (same distribution, another random stream).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import bench.compat  # noqa: F401
from bench.rows import sequence_events
from custom_models.cpu import gru4rec as cpu_path
from custom_models.cpu import ops as cpu_ops
from custom_models.cpu.dropout import dropout  # F.dropout; on CPU the mask from a C kernel
from custom_models.per_position import loss_start_of, position_targets
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

LOSSES = ("top1", "bpr", "top1-max", "bpr-max", "cross-entropy")


def final_activation(name: str):
    """``linear``, ``tanh``, ``relu``, ``elu-<alpha>``, ``leaky-<slope>`` (the Theano code's names)."""
    if name == "linear":
        return lambda x: x
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    if name.startswith("elu-"):
        alpha = float(name[4:])
        return lambda x: F.elu(x, alpha)
    if name.startswith("leaky-"):
        slope = float(name[6:])
        return lambda x: F.leaky_relu(x, slope)
    raise ValueError(f"unknown final_act {name!r}: linear, tanh, relu, elu-<a>, leaky-<a>")


# -- losses: R is [B, B + n_sample], row k's target in column k; each returns [B] -------
def _target_mask(R: torch.Tensor) -> torch.Tensor:
    return torch.eye(R.shape[0], R.shape[1], dtype=torch.bool, device=R.device)


def _negatives_softmax(R: torch.Tensor) -> torch.Tensor:
    return torch.softmax(R.masked_fill(_target_mask(R), -torch.inf), dim=1)


def top1_loss(R: torch.Tensor) -> torch.Tensor:
    pos = R.diagonal().view(-1, 1)
    terms = torch.sigmoid(R - pos) + torch.sigmoid(R * R)
    return terms.masked_fill(_target_mask(R), 0.0).sum(1) / (R.shape[1] - 1)


def bpr_loss(R: torch.Tensor) -> torch.Tensor:
    pos = R.diagonal().view(-1, 1)
    return -F.logsigmoid(pos - R).masked_fill(_target_mask(R), 0.0).sum(1) / (R.shape[1] - 1)


def top1_max_loss(R: torch.Tensor) -> torch.Tensor:
    s = _negatives_softmax(R)
    pos = R.diagonal().view(-1, 1)
    return (s * (torch.sigmoid(R - pos) + torch.sigmoid(R * R))).sum(1)


def bpr_max_loss(R: torch.Tensor, bpreg: float) -> torch.Tensor:
    """BPR-max with score regularisation. On CPU :mod:`custom_models.cpu.gru4rec` swaps in a
    C kernel (one pass over ``R`` where PyTorch's ops make ~40; same values and gradient)."""
    fast = cpu_path.bpr_max_loss(R, bpreg)
    if fast is not None:
        return fast
    s = _negatives_softmax(R)
    pos = R.diagonal().view(-1, 1)
    # + 1e-24 as in the official code: keeps the log finite when every sigmoid underflows
    return -torch.log((s * torch.sigmoid(pos - R)).sum(1) + 1e-24) + bpreg * (s * R * R).sum(1)


def cross_entropy_loss(R: torch.Tensor) -> torch.Tensor:
    return -torch.log_softmax(R, dim=1).diagonal()


# -- the three operations with a CPU speed path -----------------------------------------
def item_rows(weight: torch.Tensor, *items: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``weight[items]`` for each index tensor, with a sparse gradient: a step updates only
    these rows, as the official code's sparse optimiser does."""
    if cpu_ops.applies(weight):
        return cpu_ops.lookup(weight, *items)
    return tuple(F.embedding(i, weight, sparse=True) for i in items)


def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T + b``."""
    return cpu_ops.linear(x, weight, bias) if cpu_ops.applies(x, weight) else F.linear(x, weight, bias)


def gru_cell(cell: nn.GRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``cell(x, h)``."""
    return cpu_ops.gru_cell(x, h, cell) if cpu_ops.applies(x, h) else cell(x, h)


def _uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(tensor, -bound, bound)


class OneHotGRUCell(nn.Module):
    """First GRU layer on one-hot inputs: ``W_x x`` is a row lookup (sparse gradient)."""

    def __init__(self, n_items: int, hidden: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(n_items, 3 * hidden))  # [candidate | reset | update]
        self.weight_hh = nn.Parameter(torch.empty(hidden, 3 * hidden))
        self.bias = nn.Parameter(torch.zeros(3 * hidden))
        for g in range(3):
            _uniform_(self.weight_ih.data[:, g * hidden:(g + 1) * hidden], n_items, hidden)
            _uniform_(self.weight_hh.data[:, g * hidden:(g + 1) * hidden], hidden, hidden)

    def forward(self, items: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x_n, x_r, x_z = (item_rows(self.weight_ih, items)[0] + self.bias).chunk(3, 1)
        h_n, h_r, h_z = product(h, self.weight_hh.t()).chunk(3, 1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return (1.0 - z) * h + z * torch.tanh(x_n + r * h_n)


class BenchGRU4Rec(SequentialRecommender):
    train_on = "sequences"
    input_type = InputType.POINTWISE  # RecBole samples no negatives; GRU4Rec samples its own

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.layers = [int(n) for n in config["layers"]]
        self.loss_name = str(config["loss"])
        if self.loss_name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss_name!r}")
        self.final_act = final_activation(str(config["final_act"]))
        self.bpreg = float(config["bpreg"])
        self.logq = float(config["logq"] or 0.0)
        self.batch_size = int(config["train_batch_size"])
        self.constrained = bool(config["constrained_embedding"])
        self.embedding_size = int(config["embedding"] or 0)
        self.p_embed = float(config["dropout_p_embed"])
        self.p_hidden = float(config["dropout_p_hidden"])

        n, last = self.n_items, self.layers[-1]
        self.out_weight = nn.Parameter(torch.empty(n, last))  # W_y
        self.out_bias = nn.Parameter(torch.zeros(n, 1))  # b_y, a column as in the official code (rows update sparsely)
        _uniform_(self.out_weight.data, n, last)
        self.in_weight = self.one_hot = None
        if self.constrained:
            n_input = last
        elif self.embedding_size > 0:
            self.in_weight = nn.Parameter(torch.empty(n, self.embedding_size))
            _uniform_(self.in_weight.data, n, self.embedding_size)
            n_input = self.embedding_size
        else:
            self.one_hot = OneHotGRUCell(n, self.layers[0])
        first = 1 if self.one_hot is not None else 0
        self.cells = nn.ModuleList()
        for i in range(first, len(self.layers)):
            cell = nn.GRUCell(self.layers[i - 1] if i > 0 else n_input, self.layers[i])
            size_in, size = cell.input_size, cell.hidden_size
            for g in range(3):  # torch's gate blocks: reset, update, candidate
                _uniform_(cell.weight_ih.data[g * size:(g + 1) * size], size_in, size)
                _uniform_(cell.weight_hh.data[g * size:(g + 1) * size], size, size)
            nn.init.zeros_(cell.bias_ih)
            nn.init.zeros_(cell.bias_hh)
            self.cells.append(cell)
        # Items of the training sessions; the rest score -inf (the official code scores only those).
        _, items = sequence_events(dataset)
        known = torch.zeros(n, dtype=torch.bool)
        known[torch.as_tensor(items, dtype=torch.long)] = True
        known[0] = False
        self.register_buffer("known_items", known)

    # -- the recurrent step ---------------------------------------------------------
    def zero_state(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, size, device=self.out_weight.device) for size in self.layers]

    def step(self, items: torch.Tensor, embedded: torch.Tensor | None, H: list[torch.Tensor]) -> list[torch.Tensor]:
        """One event for every lane: the new state of every layer (the last layer's is the output).

        ``embedded`` is the input embedding of ``items`` (None for one-hot input). In
        training, each layer's output is dropped out and carried on as its state, and
        the input embedding (one-hot: the first layer's output) is dropped out.
        """
        out = []
        if self.one_hot is not None:
            x = dropout(self.one_hot(items, H[0]), self.p_embed, self.training)
            out.append(x)
        else:
            x = dropout(embedded, self.p_embed, self.training)
        for cell, h in zip(self.cells, H[len(out):]):
            x = dropout(gru_cell(cell, x, h), self.p_hidden, self.training)
            out.append(x)
        return out

    def _embed(self, items: torch.Tensor) -> torch.Tensor | None:
        if self.constrained:
            return item_rows(self.out_weight, items)[0]
        return None if self.in_weight is None else item_rows(self.in_weight, items)[0]

    def session_step(self, inputs: torch.Tensor, targets: torch.Tensor, samples: torch.Tensor | None,
                     H: list[torch.Tensor], log_q: torch.Tensor | None = None):
        """One session-parallel mini-batch: ``(loss, new state)``.

        ``log_q`` [B + n_sample]: log sampling probability of every column, for the
        cross-entropy's logQ correction.
        """
        columns = targets if samples is None else torch.cat([targets, samples])
        if self.constrained:  # inputs and outputs share W_y: one sparse gradient
            embedded, out_weight = item_rows(self.out_weight, inputs, columns)
        else:
            embedded, (out_weight,) = self._embed(inputs), item_rows(self.out_weight, columns)
        H = self.step(inputs, embedded, H)
        R = product(H[-1], out_weight, item_rows(self.out_bias, columns)[0].squeeze(1))
        loss = self.session_loss(R, log_q)
        return loss.sum() / self.batch_size, [h.detach() for h in H]

    def session_loss(self, R: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row loss [B] of the score matrix ``R`` (row ``k``'s target in column ``k``)."""
        if self.loss_name == "cross-entropy":
            if self.logq > 0 and log_q is not None:
                R = R - self.logq * log_q.view(1, -1)
            return cross_entropy_loss(R)
        R = self.final_act(R)
        if self.loss_name == "bpr-max":
            return bpr_max_loss(R, self.bpreg)
        if self.loss_name == "top1-max":
            return top1_max_loss(R)
        if self.loss_name == "bpr":
            return bpr_loss(R)
        return top1_loss(R)

    # -- whole sequences (evaluation, RecBole's API) ------------------------------------
    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, every_position: bool = True):
        """``(outputs [B, L, H_last], last [B, H_last])``: the output after every position
        (zero at padding; None unless ``every_position``) and after the last real item,
        each sequence from a zero state.

        Rows are run longest first so that step ``t`` only computes the rows still
        running (a packed sequence, without packing).
        """
        lengths, order = item_seq_len.sort(descending=True)
        seq = item_seq[order, : int(lengths[0])]
        running = (lengths.view(1, -1) > torch.arange(seq.shape[1], device=seq.device).view(-1, 1)).sum(1).tolist()
        H = self.zero_state(len(seq))
        outputs = []
        for t, n in enumerate(running):
            items = seq[:n, t]
            new = self.step(items, self._embed(items), [h[:n] for h in H])
            if every_position:
                H = [torch.cat([a, h[n:]]) for a, h in zip(new, H)]
                outputs.append(F.pad(new[-1], (0, 0, 0, len(seq) - n)))
            else:  # rows that ended keep their final state in place; no autograd here
                for h, a in zip(H, new):
                    h[:n] = a
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(len(order), device=order.device)
        return (torch.stack(outputs, dim=1)[unsort] if every_position else None), H[-1][unsort]

    def _scores(self, hidden: torch.Tensor) -> torch.Tensor:
        # -inf for unknown items through the bias: one pass over [n_items], not [B, n_items]
        return product(hidden, self.out_weight, self.out_bias.squeeze(1).masked_fill(~self.known_items, -torch.inf))

    def calculate_loss(self, interaction) -> torch.Tensor:
        """Mean full-softmax cross-entropy over every real position of whole-sequence rows."""
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        inputs, targets, real = position_targets(interaction[self.ITEM_SEQ], item_seq_len,
                                                 interaction[self.POS_ITEM_ID], loss_start_of(interaction))
        outputs, _ = self.forward(inputs, item_seq_len)
        # item 0 (padding) is never a candidate: -inf through the bias, not an in-place
        # write that makes autograd copy the [N, n_items] gradient. F.linear, not
        # product(), whose CPU weight gradient is slow for a full-catalogue output.
        bias = torch.cat([self.out_bias.new_full((1,), -torch.inf), self.out_bias[1:, 0]])
        return F.cross_entropy(F.linear(outputs[real], self.out_weight, bias), targets[real])

    def predict(self, interaction) -> torch.Tensor:
        _, last = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], every_position=False)
        items = interaction[self.ITEM_ID]
        scores = (last * self.out_weight[items]).sum(-1) + self.out_bias[items, 0]
        return scores.masked_fill(~self.known_items[items], -torch.inf)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        _, last = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], every_position=False)
        return self._scores(last)
