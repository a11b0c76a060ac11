"""Time a full training step (forward, backward, SGD step) per attention, relative to no attention.

    python -m spe_lightning.benchmarks.train_step --depth 164 --batch_size 64 --rounds 5

``spem@autograd`` is SPEM whose max/min pooling is plain ``amax``/``amin`` with autograd's
backward, the straightforward implementation, timed in the same run for comparison.
``<attention>:<pool>`` times an attention with another pool, e.g. the cost of each pool in SE:

    python -m spe_lightning.benchmarks.train_step --rounds 5 \
        --attentions '[se:avg, se:max, se:learned, se:gem, se:lse, se:softpool, se:dct]'

Configurations are timed round-robin (one step of each in turn, repeated), so drift of
a shared machine hits every configuration alike. Two ratios to the baseline are printed:
of the fastest steps (interference from other processes only ever adds time, so the
minimum estimates the step's own cost), and "paired", the median over rounds of each
step's time divided by the baseline's step of the same round (drift that lasts a round
cancels out). On a busy machine the two can differ by a few percent: run it again, or
with more rounds, before reading a difference that small.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.layers import LearnedMixPool
from spe_lightning.models import create_backbone, pooling_regularization

NAIVE_SUFFIX = "@autograd"


def _naive_max_min(x: torch.Tensor) -> torch.Tensor:
    return torch.stack((x.amax((2, 3), keepdim=True), x.amin((2, 3), keepdim=True)))


def build(attention: str, depth: int, block: str) -> nn.Module:
    """The benchmarked network; ``<name>@autograd`` swaps in autograd's max/min pooling, ``<name>:<pool>``
    sets the pool."""
    name, _, pool = attention.removesuffix(NAIVE_SUFFIX).partition(":")
    net = create_backbone("cifar_resnet", 10, depth=depth, block=block, attention=name, pool=pool or None)
    if attention.endswith(NAIVE_SUFFIX):
        for pool in net.modules():
            if isinstance(pool, LearnedMixPool):
                pool.stats = _naive_max_min
    return net.train()


def _step_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y) + 0.1 * pooling_regularization(net)
        loss.backward()
        opt.step()

    return step


def main(
    attentions: list[str] = ["none", "se", "spem", "spem@autograd"],  # noqa: B006  (jsonargparse reads the default)
    depth: int = 164,
    block: str = "bottleneck",
    batch_size: int = 64,
    image_size: int = 32,
    rounds: int = 5,
    warmup: int = 2,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Print step times per attention and their ratios to the first one (the baseline).

    Returns the paired ratios.
    """
    if not attentions:
        raise InputError("attentions=[] is not allowed; name at least one (the first is the baseline)")
    for name, value, minimum in (("batch_size", batch_size, 1), ("image_size", image_size, 1),
                                 ("rounds", rounds, 1), ("warmup", warmup, 0)):  # fmt: skip
        check_int(name, value, minimum=minimum)
    check_int("threads", threads, allow_none=True)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 10, (batch_size,))
    steps = {}
    for name in attentions:
        steps[name] = _step_fn(build(name, depth, block), x, y)
    times: dict[str, list[float]] = {name: [] for name in attentions}
    for i in range(warmup + rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    base = times[attentions[0]]
    print(
        f"cifar_resnet depth {depth} {block}, batch {batch_size}, {image_size}px, "
        f"{torch.get_num_threads()} threads, {rounds} round-robin rounds"
    )
    vs = f"vs {attentions[0]}"
    print(f"{'attention':<14}{'best (s)':>10}{'median (s)':>12}{'best ' + vs:>16}{'paired ' + vs:>18}")
    ratios = {}
    for name in attentions:
        best = min(times[name])
        ratios[name] = statistics.median(t / b for t, b in zip(times[name], base, strict=True))
        print(
            f"{name:<14}{best:>10.3f}{statistics.median(times[name]):>12.3f}"
            f"{best / min(base):>15.3f}x{ratios[name]:>17.3f}x"
        )
    return ratios


if __name__ == "__main__":
    from spe_lightning.cli.parser import script_main

    script_main(main)
