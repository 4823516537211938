"""Seeding and the optional deterministic mode of every stage (``STP_DETERMINISTIC``).

Every stage starts from :func:`seed_everything` (Python, NumPy and torch generators, CPU and
CUDA). That makes a CPU run repeat bit for bit; on CUDA some kernels (cuBLAS with its default
workspace, atomics in a few backward passes) sum in an order that is not fixed, and
:func:`deterministic_mode` asks PyTorch for the fixed-order ones.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def deterministic_mode() -> bool:
    """``STP_DETERMINISTIC``: ``1`` runs every stage with PyTorch's deterministic algorithms
    (``warn_only``: an op that has none warns, naming itself) and cuBLAS's fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set; it must precede the first CUDA product, so
    this module sets it when imported); ``0`` or unset: PyTorch's defaults, which every recorded
    run used. A record made in that mode says so (``provenance.deterministic``). Any other value
    is an error (``python -m stpcore run`` checks it before the first stage)."""
    mode = os.environ.get("STP_DETERMINISTIC", "0")
    if mode not in ("0", "1"):
        raise ValueError(f"STP_DETERMINISTIC must be 0 or 1; got {mode!r}")
    if mode == "1":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return mode == "1"


if os.environ.get("STP_DETERMINISTIC") == "1":
    deterministic_mode()       # cuBLAS's workspace is fixed before the first CUDA product


def seed_everything(seed: int) -> None:
    """Seed every generator a stage draws from; in :func:`deterministic_mode`, also turn on
    PyTorch's deterministic algorithms (never off: a caller's own setting stays)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic_mode():
        torch.use_deterministic_algorithms(True, warn_only=True)
