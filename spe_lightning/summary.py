"""Parameters and FLOPs of one backbone with each attention module, as a comparison table.

    python -m spe_lightning.summary --backbone cifar_resnet --depth 164 --block bottleneck \
        --attentions '[none, se, eca, cbam, srm, spem]'

FLOPs come from ``torch.utils.flop_counter`` for one image: 2 FLOPs per multiply-
accumulate of convolutions and matrix products. Pooling, gating and other elementwise
work is not counted, which is also how the SE, ECA and SPEM papers count. Some papers
(ECA's) report "GFLOPs" that are multiply-accumulates, or divide by 1024: we print
MACs and FLOPs, both in decimal units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jsonargparse import CLI
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spe_lightning.models import create_backbone


@dataclass(frozen=True)
class ModelStats:
    attention: str
    pool: str | None
    params: int
    flops: int

    @property
    def macs(self) -> int:
        return self.flops // 2


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_flops(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward on a single input of ``input_shape`` (C, H, W)."""
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *input_shape))
    net.train(was_training)
    return counter.get_total_flops()


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
    return ModelStats(
        str(attention), pool, count_params(net), count_flops(net, (in_chans, image_size, image_size))
    )


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


def main(
    backbone: str = "cifar_resnet",
    attentions: list[str] = ["none", "se", "eca", "cbam", "srm", "spem"],  # noqa: B006
    pool: str | None = None,
    num_classes: int = 10,
    image_size: int = 32,
    depth: int = 164,
    block: str = "bottleneck",
) -> list[ModelStats]:
    """Print parameters and FLOPs (per image) for each attention on one backbone."""
    kwargs = {"depth": depth, "block": block} if backbone == "cifar_resnet" else {}
    rows = [model_stats(backbone, num_classes, a, pool, image_size, **kwargs) for a in attentions]
    shape = f"depth {depth} {block}, " if backbone == "cifar_resnet" else ""
    print(
        f"{backbone} ({shape}{num_classes} classes), one {image_size}x{image_size} image; "
        "FLOPs = 2 x multiply-accumulates of convs and matmuls (torch.utils.flop_counter)"
    )
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    CLI(main, as_positional=False)
