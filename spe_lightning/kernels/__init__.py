"""Compiled kernels: SPEM's CPU max/min pooling (C++, built on first use) and its fused GPU gate (Triton).

Torch only; the layers that call them (:mod:`spe_lightning.layers.max_min`,
:mod:`spe_lightning.layers.spem_fused`) register them as ops with autograd.
"""
