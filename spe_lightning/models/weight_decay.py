"""Parameters kept out of weight decay, as each module's paper trains them.

A module declares the names of its own parameters that its authors do not decay with a
``no_weight_decay()`` method (timm's convention, relative to the module); :func:`no_decay_parameters`
collects them over a network, and the classifier gives them a parameter group with weight decay 0. One
mechanism for every module: GCT's beta is the first to use it.
"""

from __future__ import annotations

from torch import nn


def no_decay_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Every parameter a module of ``net`` declares in its ``no_weight_decay()``, in module order."""
    found: dict[int, nn.Parameter] = {}
    for module in net.modules():
        declare = getattr(module, "no_weight_decay", None)
        if module is net or not callable(declare):
            continue
        own = dict(module.named_parameters())
        for name in declare():
            found.setdefault(id(own[name]), own[name])
    return list(found.values())
