"""Channel attention in the three stages of "Mix-Pooling Strategy for Attention Mechanism" (arXiv 2208.10322).

1. **pool** (:meth:`ChannelAttention.pool_stage`): the module's pooling strategy (any :mod:`pool
   <spe_lightning.layers.pool>`, chosen by name) squeezes each channel of x (B x C x H x W);
2. **excite** (:meth:`ChannelAttention.excite`): the module's own maths turns what was pooled into gates;
3. **recalibrate** (:meth:`ChannelAttention.recalibrate`): ``x * gate``, in x's dtype.

A module says how it reads the pool (:attr:`ChannelAttention.pooling`) and writes its excitation; pooling and
recalibration are the base class's. Every module takes ``channels`` first, then its own keyword arguments,
then ``pool`` and ``pool_kwargs`` (timm's uniform constructor), and returns ``x * gate`` with no residual.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.layers.placement import TakesDeviceAndDtype
from spe_lightning.layers.pool import GlobalPool, create_pool, directional_help

Pooling = Literal["combined", "statistics", "directional", "none"]
"""How an excitation reads its pool:

* ``combined``: one B x C x 1 x 1 descriptor, the pool's weighted statistics (SE, ECA, GCT);
* ``statistics``: each statistic apart, S x B x C x 1 x 1, to combine with ``pool.stat_weights()`` after
  exciting each (CBAM's shared MLP, SRM's channel-wise fc, SPEM's shared reweight);
* ``directional``: ``(pooled along W: B x C x H x 1, pooled along H: B x C x 1 x W)`` (coordinate attention);
* ``none``: no pooling stage (the constant-gate control): ``excite`` gets x itself and no pool is built.
"""


def recalibrate(x: Tensor, gate: Tensor) -> Tensor:
    """Stage 3: ``x * gate`` in x's dtype (a gate computed in float32 under autocast does not upcast x)."""
    return x * gate.to(x.dtype)


class ChannelAttention(TakesDeviceAndDtype, nn.Module):
    """Base of the attention modules: pool, then :meth:`excite`, then recalibrate.

    Args:
        channels: channels of the feature map the module gates.
        pool: a pool name (``avg``, ``maxmin@0.25``, ``learned``, ...) or instance; None takes the module's
            own (:attr:`default_pool`, the one its paper uses).
        pool_kwargs: the pool's arguments (``{lam: 0.25}``).
    """

    default_pool: ClassVar[str | None] = "avg"
    """The pool the module's paper uses."""
    pooling: ClassVar[Pooling] = "combined"

    def __init__(
        self, channels: int, pool: str | GlobalPool | None = None, pool_kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        check_int("channels", channels)
        if self.pooling == "none":
            if pool is not None or pool_kwargs:
                name = type(self).__name__
                raise InputError(f"{name} has no pooling stage; leave pool and pool_kwargs unset")
            self.pool = None
            return
        spec = self.default_pool if pool is None else pool
        self.pool = create_pool(spec, channels, **(pool_kwargs or {}))
        if self.pooling == "directional" and not self.pool.directional:
            name = spec if isinstance(spec, str) else type(spec).__name__
            raise InputError(f"{type(self).__name__} cannot use pool {name!r}; {directional_help()}")

    def pool_stage(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Stage 1, in the form :attr:`pooling` names."""
        if self.pooling == "none":
            return x
        if self.pooling == "statistics":
            return self.pool.stats(x)
        if self.pooling == "directional":
            return self.pool.along(x, 3), self.pool.along(x, 2)
        return self.pool(x)

    def excite(self, pooled: Any) -> Tensor:
        """Stage 2: the gate from what :meth:`pool_stage` returned (each module's own maths)."""
        raise NotImplementedError

    def gate(self, x: Tensor) -> Tensor:
        """Stages 1 and 2: the gate that :meth:`forward` multiplies x by (what monitors summarise)."""
        return self.excite(self.pool_stage(x))

    def recalibrate(self, x: Tensor, gate: Tensor) -> Tensor:
        """Stage 3."""
        return recalibrate(x, gate)

    def forward(self, x: Tensor) -> Tensor:
        return self.recalibrate(x, self.gate(x))
