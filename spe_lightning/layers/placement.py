"""timm's uniform ``device`` and ``dtype`` keywords for every attention module.

timm's blocks build their attention as ``attn_layer(channels, **kwargs, device=..., dtype=...)``. A module
that inherits :class:`TakesDeviceAndDtype` accepts both keywords on its constructor and ends up on that
device and dtype, without each module threading them through its layers: the module is built as written,
then moved once (floating-point tensors take the dtype, others keep theirs, as :meth:`nn.Module.to` does).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch


class TakesDeviceAndDtype:
    """Mixin for an ``nn.Module``: ``Module(..., device=None, dtype=None)`` on it and on every subclass."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _placed(cls.__dict__["__init__"])


def _placed(init: Any) -> Any:
    @functools.wraps(init)
    def __init__(
        self: torch.nn.Module,
        *args: Any,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        init(self, *args, **kwargs)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    signature = inspect.signature(init)
    keyword = inspect.Parameter.KEYWORD_ONLY
    extra = [inspect.Parameter(name, keyword, default=None) for name in ("device", "dtype")]
    params = list(signature.parameters.values())
    tail = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    head = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    __init__.__signature__ = signature.replace(parameters=head + extra + tail)
    return __init__
