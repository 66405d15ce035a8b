"""Our models, as RecBole models.

``MODELS`` maps the name used in suites and on the command line to
``"module:Class"``. Class names never equal a RecBole model's name, because RecBole's
``Config`` would silently load that model's YAML defaults. Each model's own defaults
live in a YAML file beside its module (``narm.py`` -> ``narm.yaml``).
"""
import bench.compat  # noqa: F401  (numpy/torch shims before recbole)

MODELS = {
    "narm": "custom_models.narm:BenchNARM",
    "sasrec": "custom_models.sasrec:BenchSASRec",
    "gru4rec": "custom_models.gru4rec:BenchGRU4Rec",
    "pop": "custom_models.pop:BenchPOP",
    "spop": "custom_models.spop:BenchSPOP",
    "itemknn": "custom_models.itemknn:BenchItemKNN",
    "bprmf": "custom_models.bprmf:BenchBPRMF",
    "sknn": "custom_models.session_knn:BenchSKNN",
    "vsknn": "custom_models.session_knn:BenchVSKNN",
    "stan": "custom_models.session_knn:BenchSTAN",
    "vstan": "custom_models.session_knn:BenchVSTAN",
}

# Models that train with a trainer of their own (else bench.training.HarnessTrainer): the
# registry hands it to the runner, so a model file never imports its trainer.
TRAINERS = {"gru4rec": "custom_models.gru4rec_trainer:GRU4RecTrainer"}

# Variants: another name for one of MODELS with settings above its YAML (below a suite's
# overrides), so that two settings of one model are two rows of a table.
VARIANTS = {
    "sasrec-ce": ("sasrec", {"loss_type": "CE"}),            # full softmax (Klenitskiy & Vasilev 2023)
    "sasrec-sampled": ("sasrec", {"loss_type": "sampled"}),  # popularity negatives + logQ
    "narm-sampled": ("narm", {"loss_type": "sampled"}),
    # the model of the public PyTorch NARM (Wang-Shuo): GRU biases, PyTorch's default
    # initialisation (item embeddings N(0, 1)); the paper's equations otherwise
    "narm-public": ("narm", {"gru_bias": True, "weight_init": "pytorch"}),
    # the one difference of that model that validation rewards (reports/narm_public_diginetica.md):
    # its initialisation, without the GRU biases the paper's equations lack
    "narm-pytorch-init": ("narm", {"weight_init": "pytorch"}),
    # the paper's BCE with Klenitskiy & Vasilev's (RecSys 2023) SASRec settings, so that
    # their BCE number has a like-for-like row (their d 64 and dropout 0.1; their patience
    # and epoch budget are the suite's to set)
    "sasrec-kv": ("sasrec", {"hidden_size": 64, "dropout_prob": 0.1}),
}
