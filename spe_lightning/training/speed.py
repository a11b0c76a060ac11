"""Model-side speed options: channels_last memory format and ``torch.compile`` of the network.

Both are off by default and leave checkpoints unchanged: the memory format is not stored, and
``nn.Module.compile`` compiles a module in place, so its state-dict keys stay free of the ``_orig_mod.``
prefix that wrapping with ``torch.compile(module)`` adds. A checkpoint written with either option loads
without it and vice versa. Mixed precision is the Trainer's job (``trainer.precision``), not the model's.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from spe_lightning.core.errors import InputError

CompileOption = bool | dict[str, Any]
"""``False``, ``True`` (``torch.compile`` defaults) or ``torch.compile`` keyword arguments."""

_COMPILE_KWARGS = sorted(set(inspect.signature(torch.compile).parameters) - {"model"})


def compiles(option: CompileOption) -> bool:
    """Whether ``option`` compiles the network (checked apart from its keys: :func:`compile_kwargs`)."""
    return option is not False and option is not None


def compile_kwargs(option: CompileOption) -> dict[str, Any] | None:
    """Keyword arguments for ``torch.compile`` (None: do not compile); unknown keys are an InputError."""
    if not compiles(option):
        return None
    if option is True:
        return {}
    if not isinstance(option, dict):
        raise InputError(
            f"compile={option!r} is not allowed; use true, false or a dict of torch.compile options"
        )
    unknown = sorted(set(option) - set(_COMPILE_KWARGS))
    if unknown:
        raise InputError(
            f"compile options {unknown} are not allowed; torch.compile accepts {_COMPILE_KWARGS}"
        )
    return dict(option)


def prepare_network(net: nn.Module, channels_last: bool = False, compile: CompileOption = False) -> nn.Module:
    """Convert ``net`` to channels_last and/or compile it, in place; returns ``net``.

    Call it before a strategy wraps the network (DDP builds its gradient buckets from the parameters'
    strides) and compile the network, not the LightningModule, so Lightning's hooks stay eager. Only
    convolution weights change format: other 4-D parameters (SPEM's 1 x C x 1 x 1 weights) gain nothing
    and would get gradients whose strides DDP's buckets do not expect.
    """
    kwargs = compile_kwargs(compile)
    if channels_last:
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    if kwargs is not None:
        net.compile(**kwargs)
    return net


def begin_compiled_step(compile: CompileOption) -> None:
    """Tell CUDA graphs (``mode: reduce-overhead`` / ``max-autotune``) that a step starts.

    Graph trees reuse one step's output memory in the next; marking every forward (evaluation has no
    backward to mark it) keeps a step's outputs valid until the next one. A counter bump; nothing when the
    network runs eagerly.
    """
    if compiles(compile):
        torch.compiler.cudagraph_mark_step_begin()


def evaluates_in_inference_mode(compile: CompileOption) -> bool:
    """Whether standalone validate/test/predict should run under ``torch.inference_mode`` (the Trainer's
    ``inference_mode``): not for a compiled network.

    Lightning validates inside ``fit`` under ``no_grad`` whatever that setting, and torch.compile guards on
    its input being an inference tensor, which a predict batch made under inference mode is: a second
    evaluation graph (minutes at depth 164). Under ``no_grad`` every evaluation reuses fit's graph.
    """
    return not compiles(compile)


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """An image batch in the memory format the network expects (other tensors pass through)."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
