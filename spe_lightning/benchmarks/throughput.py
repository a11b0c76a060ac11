"""Training throughput (images/s) of ResNet-164 + SPEM per precision, memory format and compile.

    python -m spe_lightning.benchmarks.throughput            # on a GPU: the full table
    python -m spe_lightning.benchmarks.throughput --depth 20 --block basic --batch_size 64 \\
        --compile '[false]' --steps 5     # CPU-sized: about a minute on 2 cores

CIFAR-shaped random data (3 x 32 x 32, 10 classes) and the paper's step: SGD, cross entropy + 0.1 x the
pooling regulariser. Precision goes through Lightning Fabric, i.e. the Trainer's own precision plugins
(autocast, plus a GradScaler for 16-mixed); channels_last and compile through ``prepare_network``, as
``ImageClassifier`` applies them. Configurations run round-robin, ``steps`` timed steps each per round,
so drift of a shared machine hits all alike; the best round counts (interference only ever adds time).
Every ratio is against fp32 eager measured in the same run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric

from spe_lightning.core.errors import InputError
from spe_lightning.core.validation import check_int
from spe_lightning.models import create_backbone, pooling_parameters, pooling_regularization
from spe_lightning.training.recipe import paper_sgd
from spe_lightning.training.speed import CompileOption, prepare_network, to_memory_format

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
BASELINE = ("32", False, False)


def _unsupported(precision: str, device: str) -> str | None:
    """Why ``precision`` cannot be measured on ``device`` (None if it can)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not allowed; choose from {list(PRECISIONS)}")
    if precision == "16-mixed" and device == "cpu":
        return "Lightning runs 16-mixed as bf16-mixed on CPU"
    if precision == "bf16-mixed" and device == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bfloat16"
    return None


def _label(precision: str, channels_last: bool, compiled: bool) -> str:
    return f"{precision}{' +channels_last' if channels_last else ''}{' +compile' if compiled else ''}"


def train_step(
    config: tuple[str, bool, CompileOption],
    device: str,
    depth: int,
    block: str,
    attention: str,
    x,
    y,
    seed: int,
) -> Callable[[], None]:
    """One SGD step of a freshly built (same-seed) network under ``config`` (precision, channels_last, and
    compile: a bool or torch.compile options), as a closure; ``gpu_check`` times the same step."""
    precision, channels_last, compiled = config
    torch.manual_seed(seed)
    net = create_backbone("cifar_resnet", 10, depth=depth, block=block, attention=attention)
    prepare_network(net, channels_last=channels_last, compile=compiled)
    params = pooling_parameters(net)
    fabric = Fabric(accelerator=device, devices=1, precision=precision)
    model, optimizer = fabric.setup(net, paper_sgd(net))
    x = to_memory_format(fabric.to_device(x), channels_last)
    y = fabric.to_device(y)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) + 0.1 * pooling_regularization(net, params)
        fabric.backward(loss)
        optimizer.step()

    return step


def main(
    precisions: list[str] = list(PRECISIONS),  # noqa: B006  (jsonargparse reads the default)
    channels_last: list[bool] = [False, True],  # noqa: B006
    compile: list[bool] = [False, True],  # noqa: B006
    depth: int = 164,
    block: str = "bottleneck",
    attention: str = "spem",
    batch_size: int = 128,
    image_size: int = 32,
    steps: int = 20,
    warmup: int = 3,
    rounds: int = 3,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Print images/s per configuration and its ratio to fp32 eager; return the ratios by label."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not allowed; choose from ['auto', 'cpu', 'cuda']")
    check_int("steps", steps)
    check_int("rounds", rounds)
    check_int("warmup", warmup, minimum=0)
    if threads:
        torch.set_num_threads(threads)
    configs = [BASELINE]
    for config in itertools.product(precisions, channels_last, compile):
        reason = _unsupported(config[0], device)
        if reason:
            print(f"skipped {_label(*config)}: {reason}")
        elif config not in configs:
            configs.append(config)
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 10, (batch_size,))
    steps_of = {c: train_step(c, device, depth, block, attention, x, y, seed) for c in configs}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for config, step in steps_of.items():  # warm-up; compiles the compiled configurations
        print(f"warm-up {_label(*config)}: {warmup} steps", flush=True)  # minutes for depth 164 on a CPU
        for _ in range(warmup):
            step()
    best = dict.fromkeys(configs, 0.0)
    for done in range(rounds):
        print(f"round {done + 1} of {rounds}: {len(configs)} configurations x {steps} steps", flush=True)
        for config, step in steps_of.items():
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            best[config] = max(best[config], batch_size * steps / (time.perf_counter() - start))
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"cifar_resnet-{depth} {block} + {attention}, batch {batch_size}, {image_size}px, {name}; "
        f"best of {rounds} rounds x {steps} steps"
    )
    print(f"{'configuration':<36}{'images/s':>12}{'vs fp32 eager':>16}")
    ratios = {}
    for config in configs:
        label = _label(*config)
        ratios[label] = best[config] / best[BASELINE]
        print(f"{label:<36}{best[config]:>12.1f}{ratios[label]:>15.2f}x")
    return ratios


if __name__ == "__main__":
    from spe_lightning.cli.parser import script_main  # not at the top: gpu_check imports this module

    script_main(main)
