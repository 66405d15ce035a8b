"""CPU speed paths: drop-in replacements for parts of our models, swapped in when the
tensors are on the CPU (same inputs, outputs and gradients as the model's plain PyTorch
path, checked by ``tests/test_cpu_paths.py``). A model file calls its replacement and
falls back to its own plain path where the replacement returns None (other devices).
The one exception to "same outputs" is :mod:`custom_models.cpu.dropout`: the same
distribution from another random stream (``tests/test_cpu_dropout.py``)."""
