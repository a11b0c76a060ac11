"""Five minutes on one GPU: ResNet-164 plain / SE / SPEM training steps, eager and compiled, and the loader.

    python -m spe_lightning.benchmarks.gpu_check                      # on a GPU, the defaults
    python -m spe_lightning.benchmarks.gpu_check --depth 8 --block basic --batch_size 4 --steps 2 \\
        --no-compile --images 256                                      # a CPU smoke run (the tests')

For each attention, at batch 128, bf16-mixed autocast and channels_last (the defaults), it prints:
eager and compiled images/s (compile time apart: the first compiled steps), the GPU time against the host
time of an eager step (host time is what the Python side takes to issue it; a step whose host time is
near its GPU time is launch-bound), and per eager step the kernels (CUDA kernels; on CPU, dispatched aten
ops) and the host syncs (``aten::_local_scalar_dense`` calls) the profiler records; what SPEM's fused gate's
self-check found (``SPE_LIGHTNING_FUSED_GATE=0`` times the composite gate instead). Then the training
loader's images/s: DataLoader workers (none, and the datamodules' default for one device) against the
device pipeline.

argparse, not the CLI: the GPU machines have no jsonargparse.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from lightning.fabric.utilities.data import suggested_max_num_workers
from torch.profiler import ProfilerActivity, profile

from spe_lightning.benchmarks.loader import compare_loaders
from spe_lightning.benchmarks.throughput import train_step
from spe_lightning.cli.exit_policy import OneLineArgumentParser, exit_policy
from spe_lightning.core.validation import check_int
from spe_lightning.layers.spem_fused import fused_gate_checks


def timed(step: Callable[[], None], steps: int, device: str) -> tuple[float, float, float | None]:
    """(wall seconds per step, host seconds per step, GPU seconds per step or None on CPU)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device == "cuda" else None
    if events:
        events[0].record()
    start, host = time.perf_counter(), 0.0
    for _ in range(steps):
        issued = time.perf_counter()
        step()
        host += time.perf_counter() - issued
    if events:
        events[1].record()
    sync()
    wall = (time.perf_counter() - start) / steps
    gpu = events[0].elapsed_time(events[1]) / 1e3 / steps if events else None
    return wall, host / steps, gpu


def kernels_and_syncs(step: Callable[[], None], device: str) -> tuple[int, int]:
    """(kernels, host syncs) the profiler records in one step: CUDA kernels, or aten ops on CPU."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        if device == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    if device == "cuda":
        kernels = sum(e.device_type == torch.autograd.DeviceType.CUDA for e in events)
    else:
        kernels = sum(e.name.startswith("aten::") and not e.cpu_children for e in events)
    syncs = sum(e.name == "aten::_local_scalar_dense" for e in events)
    return kernels, syncs


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = OneLineArgumentParser(prog="python -m spe_lightning.benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--attentions", nargs="+", default=["none", "se", "spem"])
    parser.add_argument("--depth", type=int, default=164)
    parser.add_argument("--block", default="bottleneck")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fp32", action="store_true", help="no bf16-mixed autocast")
    parser.add_argument("--contiguous", action="store_true", help="no channels_last")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile_mode", default=None, help="torch.compile mode, e.g. reduce-overhead")
    parser.add_argument("--images", type=int, default=20000, help="images for the loader comparison")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    check_int("steps", args.steps)
    check_int("batch_size", args.batch_size)
    check_int("warmup", args.warmup, minimum=0)
    check_int("images", args.images)
    name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    )
    print(f"cifar_resnet-{args.depth} {args.block}, batch {args.batch_size}, bf16 {not args.fp32}, "
          f"channels_last {not args.contiguous}, {name}, torch {torch.__version__}", flush=True)  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    precision = "32" if args.fp32 else "bf16-mixed"
    x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    compile_option = {"mode": args.compile_mode} if args.compile_mode else True
    for attention in args.attentions:

        def build(compiled: bool | dict, attention: str = attention) -> Callable[[], None]:
            config = (precision, not args.contiguous, compiled)
            return train_step(config, args.device, args.depth, args.block, attention, x, y, seed=0)

        step = build(False)
        for _ in range(args.warmup):
            step()
        wall, host, gpu = timed(step, args.steps, args.device)
        kernels, syncs = kernels_and_syncs(step, args.device)
        row = {
            "eager_img_s": args.batch_size / wall,
            "host_ms": host * 1e3,
            "kernels": kernels,
            "syncs": syncs,
        }
        if gpu is not None:
            row["gpu_ms"] = gpu * 1e3
        if args.compile:
            compiled = build(compile_option)
            start = time.perf_counter()
            for _ in range(max(args.warmup, 2)):
                compiled()
            if args.device == "cuda":
                torch.cuda.synchronize()
            row["compile_s"] = time.perf_counter() - start
            row["compiled_img_s"] = args.batch_size / timed(compiled, args.steps, args.device)[0]
        results[attention] = row
        gpu_text = f", GPU {row['gpu_ms']:.1f} ms" if "gpu_ms" in row else ""
        compiled_text = (
            f"; compiled {row['compiled_img_s']:.0f} img/s (compile {row['compile_s']:.0f} s)"
            if args.compile
            else ""
        )
        eager = f"eager {row['eager_img_s']:.0f} img/s, host {row['host_ms']:.1f} ms/step{gpu_text}"
        print(
            f"{attention:<6} {eager}; {kernels} kernels, {syncs} host syncs per step{compiled_text}",
            flush=True,
        )
    for (device, dtype), used in fused_gate_checks().items():
        verdict = "agreed with the composite maths: used" if used else "off (see the warning above)"
        print(f"fused SPEM gate on {device} at {dtype}: {verdict}", flush=True)
    workers = [0, suggested_max_num_workers(1)]  # the datamodules' default on one device
    results["loader"] = compare_loaders(args.images, workers, rounds=1, batch_size=args.batch_size)
    return results


if __name__ == "__main__":
    with exit_policy():
        main()
