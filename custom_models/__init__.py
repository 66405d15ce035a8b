"""Our models, as RecBole models. Importing this package registers them."""
import bench.compat  # noqa: F401  (numpy/torch shims before recbole)
