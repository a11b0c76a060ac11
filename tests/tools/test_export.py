"""Export: every network to ONNX and torch.export, run where spe_lightning is not (one network per case:
every pool in SE, every attention with its own pool, a torchvision ResNet), and the export command."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import onnx
import pytest
import torch
from helpers.cli import run_cli, tiny_args

from spe_lightning import create_backbone
from spe_lightning.__main__ import dispatch
from spe_lightning.layers import attention_names, pool_names
from spe_lightning.tools.export import export_artifact, fold_batchnorm, inference_form, run_elsewhere

BACKBONES = {
    "cifar_resnet": {"depth": 8, "block": "basic"},
    "resnet18": {},
    "cifar_wrn": {"depth": 10, "widen_factor": 2},
    "cifar_resnext": {"depth": 11, "cardinality": 2, "width": 4},
    "timm/resnet10t": {},
    "timm/mobilenetv3_small_050": {},
}
CASES = (
    [("cifar_resnet", "se", pool) for pool in pool_names()]  # what a pool exports depends on the pool
    + [("cifar_resnet", attention, None) for attention in attention_names()]  # and on the attention
    + [("resnet18", "spem", None)]  # torchvision's blocks: their norms folded as well
    + [("cifar_wrn", "spem", None), ("cifar_resnext", "se", "maxmin@0.25")]  # the CIFAR literature's
    + [("timm/resnet10t", "spem", None), ("timm/mobilenetv3_small_050", "coord", None)]  # timm's slots
)
FORMATS = ("onnx", "pt2")
KEEPS_NORMS = {"cifar_wrn", "timm/mobilenetv3_small_050"}
"""Networks with norms that cannot fold: pre-activation ones (after a ReLU, not a convolution) and timm's
norm-plus-activation layers."""
TOLERANCE = 1e-4


def trained_like(backbone: str, attention: str, pool: str | None) -> torch.nn.Module:
    """A network off its init: BatchNorm affine and attention parameters moved, running statistics
    gathered in train mode, so that folding folds real statistics and every gate varies."""
    torch.manual_seed(len(f"{backbone}{attention}{pool}"))
    net = create_backbone(backbone, 10, attention=attention, pool=pool, **BACKBONES[backbone])
    with torch.no_grad():
        for name, param in net.named_parameters():
            if ".attn." in name or ".se." in name or "bn" in name or ".norm." in name:
                param.add_(0.2 * torch.randn_like(param))
        net.train()
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32))
    return net.eval()


@pytest.mark.slow  # each case verifies its artifacts in a fresh process
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_every_network_exports_to_standard_ops_and_matches_pytorch_at_batch_1_and_7(case, tmp_path):
    net = trained_like(*case)
    folds_all = case[0] not in KEEPS_NORMS
    images = {"b1": torch.randn(1, 3, 32, 32), "b7": torch.randn(7, 3, 32, 32)}
    inference = inference_form(net)
    paths = {fmt: tmp_path / f"net.{fmt}" for fmt in FORMATS}
    for fmt, path in paths.items():
        export_artifact(inference, images["b7"][:2], fmt, path, dynamic_batch=True)
    outputs = run_elsewhere(list(paths.items()), images)
    with torch.no_grad():
        expected = {key: net(batch) for key, batch in images.items()}
    for (fmt, path), out in zip(paths.items(), outputs, strict=True):
        for key in images:
            assert (out[key] - expected[key]).abs().max() <= TOLERANCE, (fmt, key)
            assert torch.equal(out[key].argmax(1), expected[key].argmax(1)), (fmt, key)
        if fmt == "onnx":
            graph = onnx.load(str(path))
            assert {opset.domain for opset in graph.opset_import} == {""}  # the standard domain only
            norms = "BatchNormalization" in {node.op_type for node in graph.graph.node}
            assert not (folds_all and norms)  # folded
        else:
            program = torch.export.load(str(path))
            targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
            assert not any("spe_lightning" in target for target in targets)
            assert not (folds_all and any("batch_norm" in target for target in targets))


def test_fold_batchnorm_folds_every_norm_of_a_resnet_and_keeps_its_outputs():
    net = trained_like("resnet18", "spem", None)
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    folded = inference_form(net)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 0
    assert fold_batchnorm(trained_like("resnet18", "spem", None)) == norms == 20
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    save_dir = tmp_path_factory.mktemp("runs")
    run_cli("fit", *tiny_args(save_dir))
    return save_dir, save_dir / "quickstart" / "version_0"


@pytest.mark.slow  # verified in a fresh process
@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
def test_export_command_writes_a_verified_artifact_and_its_metadata(fitted, fmt):
    save_dir, folder = fitted
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        meta = dispatch(["export", *tiny_args(save_dir), "--ckpt_path=last", f"--format={fmt}"])
    suffix = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".ts"}[fmt]
    artifact = folder / "export" / f"last{suffix}"
    assert artifact.is_file() and f"exported {artifact} ({fmt}); max abs logit difference" in out.getvalue()
    written = json.loads(Path(f"{artifact}.json").read_text())
    assert written == json.loads(json.dumps(meta))
    assert written["classes"] == [str(k) for k in range(10)] and written["num_classes"] == 10
    assert written["input"]["shape"] == ["batch", 1, 8, 8]  # the data config's channels and size
    assert written["preprocess"]["mean"] == [0.3053] and written["preprocess"]["std"] == [0.3761]
    assert written["model"]["attention"] == "spem" and written["model"]["backbone_kwargs"]["depth"] == 8
    assert written["verified"]["max_abs_diff"] <= 1e-4 and written["verified"]["batch_sizes"] == [1, 8]
    assert written.get("opset") == (18 if fmt == "onnx" else None)
    again = dispatch(
        ["export", *tiny_args(save_dir), "--ckpt_path=last", f"--format={fmt}"]
    )  # an earlier export
    assert again["checkpoint"] == written["checkpoint"]


def export_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        dispatch(["export", *args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_export_bad_input_is_one_line_and_exit_2(fitted, tmp_path, capsys):
    save_dir, _ = fitted
    base = [*tiny_args(save_dir), "--ckpt_path=last"]
    assert "format=tflite is not allowed; expected one of: onnx, pt2, torchscript" in export_error(
        capsys, *base, "--format=tflite"
    )
    other = export_error(capsys, *base, "--format=onnx", "--model.attention=se")
    assert (
        "was trained for another network, class list or input normalisation: network.attention='spem'"
        in other
    )
    (tmp_path / "a_file").write_text("")
    unwritable = export_error(capsys, *base, "--format=onnx", f"--output={tmp_path / 'a_file' / 'net.onnx'}")
    assert (
        f"output folder {tmp_path / 'a_file'} cannot be written ({tmp_path / 'a_file'} is a file)"
        in unwritable
    )
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    taken = export_error(capsys, *base, "--format=onnx", f"--output={notes}")
    assert f"output {notes} exists and is not an earlier export; choose a new --output" in taken
    assert notes.read_text() == "my notes\n"
