"""``python -m spe_lightning summary``: parameters and FLOPs of one backbone with each attention module.

    python -m spe_lightning summary --backbone cifar_resnet --depth 164 --block bottleneck \\
        --attentions '[none, se, eca, cbam, srm, spem]'

FLOPs are counted as :mod:`spe_lightning.models.complexity` counts them: 2 per multiply-accumulate of
convolutions and matrix products, for one image; MACs beside them, both in decimal units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonargparse import auto_cli

from spe_lightning.cli.parser import ToolArgumentParser
from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.models import count_flops, count_parameters, create_backbone

DEFAULT_ATTENTIONS = ("none", "se", "eca", "cbam", "srm", "spem")


@dataclass(frozen=True)
class ModelStats:
    attention: str
    pool: str | None
    params: int
    flops: int

    @property
    def macs(self) -> int:
        return self.flops // 2


def model_stats(
    backbone: str,
    num_classes: int,
    attention: str | None,
    pool: str | None = None,
    image_size: int = 32,
    in_chans: int = 3,
    **backbone_kwargs: Any,
) -> ModelStats:
    net = create_backbone(backbone, num_classes, attention=attention, pool=pool, **backbone_kwargs)
    flops = count_flops(net, (in_chans, image_size, image_size))
    return ModelStats(str(attention), pool, count_parameters(net), flops)


def format_table(rows: list[ModelStats]) -> str:
    base = rows[0]
    lines = [
        f"{'attention':<10}{'pool':<9}{'params':>12}{'+params':>10}{'MMACs':>10}{'MFLOPs':>10}{'+FLOPs':>9}",
    ]
    for r in rows:
        lines.append(
            f"{r.attention:<10}{r.pool or 'default':<9}{r.params:>12,}{r.params - base.params:>+10,}"
            f"{r.macs / 1e6:>10.2f}{r.flops / 1e6:>10.2f}{(r.flops / base.flops - 1) * 100:>+8.2f}%"
        )
    return "\n".join(lines)


def summary(
    backbone: str = "cifar_resnet",
    attentions: list[str] = list(DEFAULT_ATTENTIONS),  # noqa: B006  (jsonargparse reads the default)
    pool: str | None = None,
    num_classes: int = 10,
    image_size: int = 32,
    depth: int = 164,
    block: str = "bottleneck",
    backbone_kwargs: dict[str, Any] | None = None,
) -> list[ModelStats]:
    """Print parameters and FLOPs (per image) for each attention on one backbone; the first is the baseline
    of the + columns. ``depth`` and ``block`` shape ``cifar_resnet``; ``backbone_kwargs`` any backbone
    (``{depth: 28, widen_factor: 10}`` for ``cifar_wrn``), as in a config's ``model.backbone_kwargs``."""
    if not attentions:
        raise InputError(f"attentions={attentions!r} is not allowed; name at least one (e.g. '[none, spem]')")
    check_int("num_classes", num_classes)
    check_int("image_size", image_size)
    kwargs = {"depth": depth, "block": block} if backbone == "cifar_resnet" else {}
    kwargs.update(backbone_kwargs or {})
    rows = [model_stats(backbone, num_classes, a, pool, image_size, **kwargs) for a in attentions]
    shape = "".join(f"{key} {value}, " for key, value in kwargs.items())
    print(
        f"{backbone} ({shape}{num_classes} classes), one {image_size}x{image_size} image; "
        "FLOPs = 2 x multiply-accumulates of convs and matmuls (torch.utils.flop_counter)"
    )
    print(format_table(rows))
    return rows


def main(args: list[str]) -> list[ModelStats]:
    """``python -m spe_lightning summary [--backbone ...] [--attentions '[...]'] ...``."""
    return auto_cli(
        summary,
        args=args,
        as_positional=False,
        parser_class=ToolArgumentParser,
        prog="python -m spe_lightning summary",
    )
