"""Read SPEM's learned pooling out of any model, without threading it through forward().

The reference code returns (logits, pooling parameters) from every forward; here the
trainer asks the model for the regulariser and the callbacks for the lams.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

from spe_lightning.layers.pool import GlobalPool, LearnedMixPool, mix_regularization
from spe_lightning.models.attach import attention_modules

Pool = TypeVar("Pool", bound=GlobalPool)


def learned_pools(model: nn.Module) -> list[tuple[str, LearnedMixPool]]:
    """(block name, pool) for every learned max/min mix, in forward order (see :func:`pools_by_block`)."""
    return pools_by_block(model, LearnedMixPool)


def valued_pools(model: nn.Module) -> list[tuple[str, GlobalPool]]:
    """(block name, pool) for every pool with learned values to watch (lam, GeM's p, LSE's r, ...)."""
    return [(block, pool) for block, pool in pools_by_block(model, GlobalPool) if pool.logged_values()]


def pools_by_block(model: nn.Module, kind: type[Pool]) -> list[tuple[str, Pool]]:
    """(block name, pool) for every ``kind`` pool, in forward order.

    A pool inside an attention that :func:`attach_attention` placed is named by that attention's block
    (``layer1.0.bn3.attn.pool`` and timm's ``blocks.1.0.se.pool`` -> ``layer1.0``, ``blocks.1.0``), so
    tags read like the architecture whatever slot the backbone gave the attention; any other pool by its
    own path."""
    owners = {id(part): block for block, attn in attention_modules(model) for part in attn.modules()}
    return [
        (owners.get(id(module), name), module)
        for name, module in model.named_modules()
        if isinstance(module, kind)
    ]


def pooling_parameters(model: nn.Module) -> list[Tensor]:
    """The p of every learned mix, in forward order: what the regulariser sums (cache it: a walk over a
    ResNet-164's 612 modules costs more than the sum itself)."""
    return [m.p for m in model.modules() if isinstance(m, LearnedMixPool)]


def pooling_regularization(model: nn.Module, params: list[Tensor] | None = None) -> Tensor:
    """Sum over learned mixes of sum_i p_i^2: the paper's pooling-parameter loss (alpha not applied).

    ``params``: :func:`pooling_parameters` of ``model``, computed once, so a training step does not walk
    the model."""
    params = pooling_parameters(model) if params is None else params
    if not params:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return mix_regularization(torch.cat(params))  # one op for all blocks, not three per block


def pooling_lambdas(model: nn.Module) -> list[tuple[str, Tensor]]:
    """(block name, current lam) for every learned mix; lam weighs max, 1 - lam weighs min."""
    return [(name, pool.lam.detach()) for name, pool in learned_pools(model)]
