"""``python -m spe_lightning export --config ... --ckpt_path last --format onnx|pt2|torchscript``.

The checkpoint (``last``, ``best`` or a file, resolved by the run layer as ``validate`` resolves it) is
loaded into the network the config builds (a checkpoint made for another model is refused), which is then
put in inference form: eval mode, BatchNorm folded into the convolution before it
(``torch.nn.utils.fusion.fuse_conv_bn_eval``), max/min pooling as ``amax``/``amin``
(:func:`~spe_lightning.layers.max_min.standard_ops`: no indices are needed without a backward). The
artifact therefore holds standard operators only and runs where spe_lightning is not installed.

Formats: ``onnx`` (torch's dynamo exporter, opset :data:`OPSET`), ``pt2`` (``torch.export``, loaded with
``torch.export.load``), ``torchscript`` (traced and frozen). The batch axis is dynamic unless
``--dynamic_batch false``; channels and image size are the data config's.

Every artifact is verified in a fresh Python process that never imports spe_lightning, on real images
of the datamodule's evaluation split: the max abs difference of its logits from the PyTorch model's is
printed, and above ``--tolerance`` (default 1e-4) the export fails. Beside it, ``<artifact>.json`` holds
what a deployment needs: class names, input size and channels, normalisation, the output's meaning, the
model's spec, the checkpoint and the verification.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from spe_lightning.cli.checks import check_finite, check_identity, check_writable
from spe_lightning.cli.lightning_cli import SPECLI, build_cli
from spe_lightning.core.errors import InputError, RunFailure
from spe_lightning.core.validation import check_int
from spe_lightning.layers.max_min import standard_ops
from spe_lightning.models.attach import NormAttention
from spe_lightning.runs.checkpoints import check_checkpoint_fits
from spe_lightning.runs.plan import plan_run

Format = Literal["onnx", "pt2", "torchscript"]
SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".ts"}
OPSET = 18
"""ONNX opset: 18 has ReduceMax/ReduceMin with axes as an input, and is torch's dynamo exporter default."""
MARK = "spe_lightning export"
"""The metadata's ``exporter`` value: an output path holding an earlier export may be written over."""

VERIFY = r"""
import json, sys
import numpy as np

def runner(fmt, path):
    if fmt == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import torch
    module = torch.export.load(path).module() if fmt == "pt2" else torch.jit.load(path)
    return lambda x: module(torch.from_numpy(x)).detach().numpy()

inputs = np.load(sys.argv[2], allow_pickle=False)
outputs = {}
for job, (fmt, path) in enumerate(json.loads(open(sys.argv[1]).read())):
    run = runner(fmt, path)
    outputs.update({f"{job}/{key}": run(inputs[key]) for key in inputs.files})
np.savez(sys.argv[3], **outputs)
assert not any(name.split(".")[0] == "spe_lightning" for name in sys.modules), "spe_lightning was imported"
"""


def _last_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    """The convolution a module ends with: itself, or a ``Sequential``'s last child, recursively (timm's
    deep stems); (its holder, its name, it)."""
    holder, name, child = None, "", module
    while isinstance(child, nn.Sequential) and len(child):
        holder, name, child = child, str(len(child) - 1), child[-1]
    return (holder, name, child) if holder is not None and isinstance(child, nn.Conv2d) else None


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every BatchNorm into the convolution registered just before it in the same module (how
    torchvision's blocks, timm's, our stems, SRM and ``Sequential`` downsamples are built; a norm wrapped
    with attention counts, and so does a ``Sequential`` that ends with the convolution); the norm becomes
    Identity. Returns how many. Only plain ``BatchNorm2d`` folds: a subclass that does more (timm's
    BatchNormAct2d) stays, and so do pre-activation norms, which follow no convolution. Exported artifacts
    are verified against the unfolded model, so a module whose data flow differed would fail the export,
    not pass."""
    folded = 0
    for module in list(net.modules()):
        for (conv_name, conv), (norm_name, norm) in itertools.pairwise(list(module.named_children())):
            holder, attr = (norm, "norm") if isinstance(norm, NormAttention) else (module, norm_name)
            bn = getattr(holder, attr)
            if type(bn) is not nn.BatchNorm2d:
                continue
            target = (module, conv_name, conv) if isinstance(conv, nn.Conv2d) else _last_conv(conv)
            if target is not None:
                owner, name, found = target
                setattr(owner, name, fuse_conv_bn_eval(found, bn))
                setattr(holder, attr, nn.Identity())
                folded += 1
    return folded


def inference_form(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode with BatchNorm folded (the original stays as it is)."""
    copied = copy.deepcopy(net).eval()
    fold_batchnorm(copied)
    return copied


def export_artifact(
    net: nn.Module, example: torch.Tensor, fmt: Format, path: Path, dynamic_batch: bool
) -> None:
    """Write ``net`` (in inference form) as ``fmt`` to ``path``, traced on ``example`` (N x C x H x W)."""
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None  # per forward argument
    with torch.no_grad(), standard_ops():
        if fmt == "onnx":
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=["images"],
                output_names=["logits"],
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
        elif fmt == "pt2":
            torch.export.save(torch.export.export(net, (example,), dynamic_shapes=shapes), str(path))
        else:
            torch.jit.freeze(torch.jit.trace(net, example)).save(str(path))


def run_elsewhere(artifacts: list[tuple[Format, Path]], batches: dict[str, torch.Tensor]) -> list[dict]:
    """Each artifact's outputs on ``batches``, computed in one fresh process that does not import
    spe_lightning (it could not: the artifacts must hold standard operators only)."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        jobs, inputs, outputs = Path(tmp) / "jobs.json", Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        jobs.write_text(json.dumps([(fmt, str(path)) for fmt, path in artifacts]))
        np.savez(inputs, **{key: value.numpy() for key, value in batches.items()})
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        done = subprocess.run(
            [sys.executable, "-c", VERIFY, str(jobs), str(inputs), str(outputs)],
            cwd=tmp,  # not the repository: its spe_lightning folder must not be importable by accident
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RunFailure(f"an exported artifact does not run outside spe_lightning: {last}")
        with np.load(outputs) as loaded:
            return [
                {key: torch.from_numpy(loaded[f"{job}/{key}"]) for key in batches}
                for job in range(len(artifacts))
            ]


@dataclass
class Verification:
    max_abs_diff: float
    images: int
    batch_sizes: list[int]
    argmax_agrees: bool


def verify(fmt: Format, path: Path, net: nn.Module, images: torch.Tensor, tolerance: float) -> Verification:
    """Compare the artifact with ``net`` (eval, unfolded) at batch 1 and at the whole of ``images``."""
    sizes = sorted({1, len(images)})
    batches = {f"b{n}": images[:n].contiguous() for n in sizes}
    (outputs,) = run_elsewhere([(fmt, path)], batches)
    with torch.no_grad():
        expected = {key: net.eval()(batch) for key, batch in batches.items()}
    diff = max(float((outputs[key] - expected[key]).abs().max()) for key in batches)
    agree = all(torch.equal(outputs[k].argmax(1), expected[k].argmax(1)) for k in batches)
    result = Verification(diff, len(images), sizes, agree)
    if diff > tolerance or not agree:
        raise RunFailure(
            f"exported {path} differs from the PyTorch model: max abs logit difference {diff:.3g} "
            f"(tolerance {tolerance:g}), argmax {'agrees' if agree else 'differs'}"
        )
    return result


def check_output(path: Path) -> None:
    """An output may be new, or an earlier export (its metadata says so); nothing else is written over."""
    meta = path.with_name(path.name + ".json")
    if path.exists():
        earlier = json.loads(meta.read_text()).get("exporter") if meta.is_file() else None
        if earlier != MARK:
            raise InputError(f"output {path} exists and is not an earlier export; choose a new --output")
    check_writable(path.parent, "--output")


def export(
    net: nn.Module,
    images: torch.Tensor,
    fmt: Format,
    path: Path,
    metadata: dict[str, Any],
    dynamic_batch: bool = True,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Export ``net``, verify it on ``images`` elsewhere, write ``<path>.json``; the metadata written."""
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = images[:2] if dynamic_batch else images[:1]  # a batch of 1 would specialise the batch axis
    export_artifact(
        inference_form(net),
        example.expand(2, *example.shape[1:]) if dynamic_batch else example,
        fmt,
        path,
        dynamic_batch,
    )
    check = verify(fmt, path, net, images, tolerance)
    channels, height, width = images.shape[1:]
    meta = {
        "exporter": MARK,
        "format": fmt,
        **({"opset": OPSET} if fmt == "onnx" else {}),
        "input": {
            "name": "images",
            "shape": ["batch" if dynamic_batch else 1, channels, height, width],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "output": {"name": "logits", "shape": ["batch", metadata["num_classes"]], "probabilities": "softmax"},
        **metadata,
        "verified": {
            **vars(check),
            "tolerance": tolerance,
            "runtime": "onnxruntime" if fmt == "onnx" else "torch",
        },
        "torch": torch.__version__,
    }
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


class ExportCLI(SPECLI):
    """The training CLI's parser for model and data (``--config`` and every ``--model``/``--data`` option),
    with the export options beside them; builds model and data and runs nothing."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        group = parser.add_argument_group("export", "What to export, where, and how it is verified.")
        group.add_argument("--format", type=Format, required=True, help="onnx, pt2 or torchscript")
        group.add_argument("--ckpt_path", type=str, required=True, help="last, best or a checkpoint file")
        group.add_argument(
            "--output", type=str | None, default=None, help="default: <run>/export/<ckpt>.<ext>"
        )
        group.add_argument("--dynamic_batch", type=bool, default=True, help="a dynamic batch axis")
        group.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference allowed")
        group.add_argument("--num_images", type=int, default=8, help="evaluation images the check runs on")


def main(args: list[str]) -> dict[str, Any]:
    """``export --config ... --ckpt_path last|best|FILE --format onnx|pt2|torchscript [--output PATH]
    [--dynamic_batch true] [--tolerance 1e-4] [--num_images 8]``; the model and data options are fit's."""
    cli = build_cli(args, run=False, cli_class=ExportCLI, command="export")
    opts: Namespace = cli.config
    check_int("num_images", opts.num_images)
    plan = plan_run(opts.clone(), "validate")  # last / best / a file, as evaluations resolve them
    model, data = cli.model, cli.datamodule
    check_identity(plan, model, data, opts.model.as_dict())  # the metadata's classes and normalisation
    check_checkpoint_fits(plan.checkpoint, model, plan.ckpt_path)
    check_finite(plan.checkpoint, plan.ckpt_path, model)
    suffix = SUFFIX[opts.format]
    path = Path(opts.output) if opts.output else plan.run.folder / "export" / f"{plan.ckpt_path.stem}{suffix}"
    check_output(path)
    model.load_state_dict(plan.checkpoint["state_dict"])
    data.prepare_data()
    data.setup("test")
    images = next(iter(data.test_dataloader()))[0][: opts.num_images]
    metadata = {
        "classes": list(data.classes) if data.classes else [str(k) for k in range(model.hparams.num_classes)],
        "num_classes": model.hparams.num_classes,
        "preprocess": {
            "image_size": images.shape[-1],
            "channels": images.shape[1],
            "mean": list(data.mean),
            "std": list(data.std),
            "scale": "pixel values / 255, then (x - mean) / std per channel",
            "eval_transform": repr(data.eval_transform),
        },
        "model": {k: v for k, v in model.hparams.items() if not k.startswith("_")},
        "checkpoint": {"path": str(plan.ckpt_path), "global_step": plan.start_step},
    }
    meta = export(model.net, images, opts.format, path, metadata, opts.dynamic_batch, opts.tolerance)
    check = meta["verified"]
    print(
        f"exported {path} ({opts.format}); max abs logit difference to PyTorch "
        f"{check['max_abs_diff']:.2e} on "
        f"{check['images']} images (batch sizes {check['batch_sizes']}, tolerance {opts.tolerance:g}), "
        f"same argmax; metadata {path}.json"
    )
    return meta
