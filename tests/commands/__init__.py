"""Tests of the repository's commands (train.py, evaluate.py, compare.py, latent.py, train_multi_gpu.py)
and their error boundary."""
