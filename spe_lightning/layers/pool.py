"""Stage 1 of channel attention: global pooling strategies.

Every strategy exposes the statistics it is built from, ``stats(x)``: a stack of S
pooled descriptors, S x B x C x 1 x 1, and the weights that combine them,
``stat_weights()`` (S, or S x C for per-channel weights); ``forward(x)`` returns the
combined descriptor (B x C x 1 x 1).
The statistic axis leads so that each statistic is a contiguous B x C block: the gates'
elementwise ops then run along channels (with S innermost, a B x C x 2 tensor makes
every op a loop of length two). Modules that pool once (SE, ECA) call
``forward``; modules that process each statistic (CBAM's shared MLP, SRM's
channel-wise fc, SPEM's shared reweight) call ``stats`` and combine with the weights.
The max/min mixes are from "Mix-Pooling Strategy for Attention Mechanism"
(arXiv 2208.10322).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.core.registry import Registry, build
from spe_lightning.core.validation import check_int
from spe_lightning.layers.max_min import global_max_min

POOLS: Registry[type[GlobalPool]] = Registry("pool")
"""Every pooling strategy by name; each pool module files its classes here."""


class GlobalPool(nn.Module):
    """Base class: a pool is a weighted sum of per-channel spatial statistics."""

    num_stats: int = 1
    shorthand: str | None = None
    """The argument ``<name>@<value>`` sets (see :func:`parse_pool`), if the pool has one."""
    directional: bool = True
    """Whether :meth:`along` works: the statistic is defined on any set of positions and shares its
    parameters across channels (a per-channel or 2-D parameter cannot follow one axis's positions)."""

    def __init__(self, weights: tuple[float, ...] = (1.0,)) -> None:
        super().__init__()
        self.register_buffer("_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    def stats(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def stat_weights(self) -> Tensor:
        return self._weights

    def forward(self, x: Tensor) -> Tensor:
        return combine_stats(self.stats(x), self.stat_weights())

    def along(self, x: Tensor, dim: int) -> Tensor:
        """Pool along one spatial axis only: ``dim=3`` (W) gives B x C x H x 1, ``dim=2`` (H) B x C x 1 x W.

        Each row (or column) is pooled as a 1 x W (H) map of its own: coordinate attention's squeeze.
        """
        if not self.directional:
            raise InputError(f"{type(self).__name__} has no pooling along one axis; {directional_help()}")
        if dim not in (2, 3):
            raise ValueError(f"along dim={dim!r} is not allowed; pool along 2 (H) or 3 (W)")
        b, c, h, w = x.shape
        rows = x if dim == 3 else x.transpose(2, 3)  # rows to pool, each along the last axis
        pooled = self(rows.reshape(b, c * rows.shape[2], 1, rows.shape[3]))
        return pooled.view(b, c, h, 1) if dim == 3 else pooled.view(b, c, 1, w)

    def logged_values(self) -> dict[str, Tensor]:
        """Learned scalars to watch during training (``{"lam": ...}``), logged per block by PoolingMonitor,
        with their mean, min and max per stage."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that make this pool what it is, shown in its repr."""
        return {}

    def extra_repr(self) -> str:
        """Its settings, then its learned values now: ``FixedMixPool(lam=0.25)``,
        ``LearnedMixPool(pools=('max', 'min'), parameterization='square', lam=0.5)``."""
        shown = [f"{name}={value!r}" for name, value in self.settings().items()]
        learned = {name: value for name, value in self.logged_values().items() if not value.is_meta}
        return ", ".join(shown + [f"{name}={value.item():.4g}" for name, value in learned.items()])

    def diagnostics(self, alpha: float = 0.0) -> dict[str, Tensor]:
        """Further per-block scalars that explain how the learned values move (logged per block only);
        ``alpha`` is the weight of the pooling regulariser in the loss."""
        return {}


def directional_pools() -> list[str]:
    """The pools with a form along one axis (:meth:`GlobalPool.along`), by name."""
    return [name for name, cls in POOLS.items() if cls.directional]


def directional_help() -> str:
    return f"pools that pool along one axis: {', '.join(directional_pools())}"


def broadcast_weights(weights: Tensor) -> Tensor:
    """Weights of shape S (one per statistic) or S x C (per channel) as S x 1 x C' x 1 x 1."""
    return weights.reshape(weights.shape[0], 1, -1, 1, 1)


def combine_stats(stats: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum over the statistics axis: S x B x C x 1 x 1 -> B x C x 1 x 1.

    A single statistic has weight one by definition, so it passes through untouched.
    """
    if stats.shape[0] == 1:
        return stats[0]
    return (stats * broadcast_weights(weights)).sum(0)


@POOLS.register("avg")
class AvgPool(GlobalPool):
    """Global average pooling, the default of SE and ECA."""

    def stats(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)[None]


@POOLS.register("max")
class MaxPool(GlobalPool):
    """Global max pooling; like AdaptiveMaxPool2d, the gradient goes to one element per channel."""

    def stats(self, x: Tensor) -> Tensor:
        return global_max_min(x)[:1]  # the kernel finds both extremes at the cost of one


@POOLS.register("min")
class MinPool(GlobalPool):
    """Global min pooling; the gradient goes to one element per channel."""

    def stats(self, x: Tensor) -> Tensor:
        return global_max_min(x)[1:]


@POOLS.register("maxmin", "fixed_mix")  # fixed_mix: an alias kept for older configs
class FixedMixPool(GlobalPool):
    """``lam * max + (1 - lam) * min`` with lam given: the paper's phenomenon experiment."""

    num_stats = 2
    shorthand = "lam"

    def __init__(self, lam: float = 0.5) -> None:
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"maxmin pool lam={lam!r} is outside the allowed range [0, 1]")
        super().__init__((lam, 1.0 - lam))
        self.lam = lam

    def settings(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def stats(self, x: Tensor) -> Tensor:
        return global_max_min(x)  # both extremes in one autograd node


@POOLS.register("learned", "learned_mix")  # learned_mix: an alias kept for older configs
class LearnedMixPool(GlobalPool):
    """SPEM's self-adaptive mix: weights p_i^2 / sum_j p_j^2 over ``pools``, with p learned per block.

    The paper mixes max and min: lam = p0^2 / (p0^2 + p1^2) weighs max and 1 - lam min. Any list of
    single-statistic pools works the same way (``pools: [avg, max, min]``). The squares keep the weights
    non-negative and summing to one; the regulariser sum p_i^2 (added to the loss by the trainer) keeps p
    from growing without bound, since the weights are invariant to the scale of p.

    ``parameterization="softmax"`` (not the paper's; for studying the dynamics) uses softmax(p) instead:
    the weights then depend on differences of p, not its direction, and the same regulariser pulls them
    towards the even mix.
    """

    def __init__(
        self,
        init: tuple[float, ...] | None = None,
        pools: tuple[str, ...] = ("max", "min"),
        channels: int | None = None,
        parameterization: str = "square",
    ) -> None:
        pools = tuple(pools)
        init = tuple(init) if init is not None else (0.5,) * len(pools)
        if len(pools) < 2 or len(init) != len(pools):
            raise InputError(
                f"learned pool: pools={list(pools)!r} with init={list(init)!r} is not allowed; "
                "give two or more pools and one init value per pool"
            )
        if parameterization not in PARAMETERIZATIONS:
            raise InputError(
                f"learned pool: parameterization={parameterization!r} is not allowed; "
                f"use one of: {', '.join(PARAMETERIZATIONS)}"
            )
        super().__init__(init)
        self.num_stats = len(pools)
        self.pool_names = pools
        self.parameterization = parameterization
        self.p = nn.Parameter(torch.tensor(init, dtype=torch.float32))
        # the paper's pair runs as one fused max/min op; other lists pool one by one
        self.pools = None if pools == ("max", "min") else nn.ModuleList(_single_stat_pools(pools, channels))
        self.directional = self.pools is None or all(pool.directional for pool in self.pools)

    def stats(self, x: Tensor) -> Tensor:
        if self.pools is None:
            return global_max_min(x)
        return torch.cat([pool.stats(x) for pool in self.pools])

    def stat_weights(self) -> Tensor:
        p = self.p.float()  # float32 even under autocast
        if self.parameterization == "softmax":
            return p.softmax(0)
        sq = p.square()
        return sq / sq.sum()

    @property
    def lam(self) -> Tensor:
        """Current weight of the first pool (max pooling in the paper's mix; min gets 1 - lam)."""
        return self.stat_weights()[0]

    def regularization(self) -> Tensor:
        return mix_regularization(self.p)

    def logged_values(self) -> dict[str, Tensor]:
        return {"lam": self.lam}

    def settings(self) -> dict[str, Any]:
        return {"pools": self.pool_names, "parameterization": self.parameterization}

    def diagnostics(self, alpha: float = 0.0) -> dict[str, Tensor]:
        """What explains lam's moves: |p|, and after a backward pass dL_cls/dlam (two-pool mixes).

        L_cls reaches p through lam only, so its gradient on p is dL_cls/dlam * dlam/dp: projecting
        ``p.grad`` minus the regulariser's ``alpha * 2 p`` on dlam/dp gives dL_cls/dlam (weight decay is not
        in ``p.grad``). For the paper's squares dlam/dp = 2 p0 p1 / |p|^4 * (p1, -p0) is orthogonal to p, so
        the regulariser drops out whatever ``alpha``; for softmax dlam/dp = lam (1 - lam) * (1, -1).
        0 where lam is exactly 0 or 1 (no direction to move).
        """
        p = self.p.detach().float()
        values = {"p_norm": p.norm()}
        if self.p.grad is None or self.num_stats != 2:
            return values
        grad = self.p.grad.detach().float() - 2 * alpha * p
        if self.parameterization == "softmax":
            lam = p.softmax(0)[0]
            direction = torch.stack((lam * (1 - lam), -lam * (1 - lam)))
        else:
            direction = 2 * p[0] * p[1] / p.square().sum().square() * torch.stack((p[1], -p[0]))
        norm = direction.square().sum()
        values["lam_grad"] = torch.where(norm > 0, (grad * direction).sum() / norm, torch.zeros_like(norm))
        return values


PARAMETERIZATIONS = ("square", "softmax")
"""How a learned mix turns p into weights: the paper's p_i^2 / sum p_j^2, or softmax(p)."""


def _single_stat_pools(names: tuple[str, ...], channels: int | None) -> list[GlobalPool]:
    pools = [create_pool(name, channels=channels) for name in names]
    multi = [name for name, pool in zip(names, pools, strict=True) if pool.num_stats != 1]
    if multi:
        single = ", ".join(n for n, cls in POOLS.items() if cls.num_stats == 1)
        raise InputError(f"learned pool: {', '.join(multi)} pool more than one statistic; mix from: {single}")
    return pools


def mix_regularization(p: Tensor) -> Tensor:
    """sum p_i^2 over any stack of learned-mix parameters (float32 under autocast)."""
    return p.float().square().sum()


@POOLS.register("avgmax")
class AvgMaxPool(GlobalPool):
    """Average and max as two statistics that are summed: CBAM's channel branches."""

    num_stats = 2

    def __init__(self) -> None:
        super().__init__((1.0, 1.0))

    def stats(self, x: Tensor) -> Tensor:
        return avg_and_max(x)


def avg_and_max(x: Tensor) -> Tensor:
    """2 x B x C x 1 x 1: the spatial mean, then the max (one-index backward): CBAM's and the mixes' pair."""
    return torch.cat((x.mean((2, 3), keepdim=True)[None], global_max_min(x)[:1]))


@POOLS.register("meanstd", "style")  # style: an alias kept for older configs
class MeanStdPool(GlobalPool):
    """SRM's style pooling: channel mean and standard deviation.

    Population std (correction 0) so a 1x1 feature map gives 0, not NaN; the BatchNorm
    that follows SRM's channel-wise fc absorbs the constant factor against the
    unbiased estimate.
    """

    num_stats = 2

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__((1.0, 1.0))
        self.eps = eps

    def settings(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def stats(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x.float(), dim=(2, 3), correction=0, keepdim=True)
        return torch.stack((mean, (var + self.eps).sqrt())).to(x.dtype)


def pool_names() -> list[str]:
    """Every pool's name (aliases resolve to these: :meth:`Registry.canonical`)."""
    return POOLS.names()


def reduced_width(channels: int, reduction: int) -> int:
    """Hidden width of an excitation bottleneck (SE, CBAM): ``channels // reduction``, at least 1."""
    check_int("reduction", reduction, hint=" (SE uses 16)")
    return max(1, channels // reduction)


def parse_pool(spec: str) -> tuple[str, dict[str, Any]]:
    """``"maxmin@0.25"`` -> ``("maxmin", {"lam": 0.25})``: ``name@value`` sets the pool's first argument.

    A one-word way to name a pool with its argument (a grid axis, a run's name); ``name`` alone has none.
    """
    name, _, value = spec.partition("@")
    if not value:
        return name, {}
    argument = POOLS.get(name).shorthand
    if argument is None:
        with_one = ", ".join(f"{n}@<{cls.shorthand}>" for n, cls in POOLS.items() if cls.shorthand)
        raise InputError(
            f"pool {spec!r} is not allowed: {name!r} takes no @value (pools that do: {with_one})"
        )
    try:
        return name, {argument: float(value)}
    except ValueError:
        raise InputError(f"pool {spec!r}: {value!r} is not a number ({name}@<{argument}>)") from None


def create_pool(name: str | GlobalPool, channels: int | None = None, **kwargs: Any) -> GlobalPool:
    """Build a pooling strategy by name (or ``name@value``, see :func:`parse_pool`); an instance passes
    through unchanged. ``channels`` (the attention's width) goes to the pools that take it (per-channel
    parameters, FcaNet's channel groups)."""
    if isinstance(name, GlobalPool):
        if kwargs:
            raise InputError(f"pool arguments {sorted(kwargs)} given with a pool instance; pass a name")
        return name
    base, shorthand = parse_pool(name)
    clash = sorted(set(shorthand) & set(kwargs))
    if clash:
        raise InputError(f"pool {name!r} sets {clash[0]} twice (in the name and in pool_kwargs); keep one")
    cls = POOLS.get(base)
    if "channels" in inspect.signature(cls).parameters:
        kwargs["channels"] = channels
    return build(cls, f"pool {base!r}", **shorthand, **kwargs)
