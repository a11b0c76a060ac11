"""The compiled CPU max/min kernel: torch.max/torch.min's values and indices, its switch and its builds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from spe_lightning.kernels import cpu_max_min as kernel_module
from spe_lightning.kernels.cpu_max_min import ENV_VAR, cpu_max_min, extension_name
from spe_lightning.layers.max_min import global_max_min

LENGTHS = [1, 2, 7, 15, 16, 17, 49, 63, 64, 65, 100, 256, 1024]
"""Around the vector widths (8 floats with AVX2, 16 with AVX512) and the four-vector unroll."""


@pytest.fixture
def kernel():
    found = cpu_max_min()
    assert found is not None, "the CPU kernel did not build on this machine"
    return found


def reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.max/torch.min over dim 1 of (outer, len, inner), stacked as the kernel's (2, outer, inner)."""
    top, top_index = x.max(1)
    bottom, bottom_index = x.min(1)
    return torch.stack((top, bottom)), torch.stack((top_index, bottom_index))


def hard_rows(length: int, inner: int, dtype: torch.dtype) -> torch.Tensor:
    """Random rows plus the cases that break a naive kernel: ties, constants, NaN and infinities."""
    x = torch.randn(10, length, inner, generator=torch.Generator().manual_seed(length))
    x[1] = 0.5  # constant: max and min both at index 0
    x[2, length // 3] = 9.0
    x[2, length - 1] = 9.0  # a tie for the max: the first one wins
    x[3, length // 2] = -9.0
    x[3, 0] = -9.0
    x[4, length - 1] = float("nan")  # NaN is the extreme of both, wherever it is
    x[5, length // 2] = float("inf")
    x[6, length // 4] = float("-inf")
    x[7, max(0, length - 2) :] = float("nan")  # two NaNs: the first one's index
    x[8, 0] = float("-inf")
    x[8, length - 1] = float("inf")  # both infinities: their sum is NaN, yet the row holds none
    x[9] = 3e38 * torch.sign(x[9])  # sums past the float range
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("inner", [1, 3, 37], ids=["rows", "columns", "columns-with-tail"])
def test_kernel_matches_torch_max_min(kernel, dtype, inner):
    for length in LENGTHS:
        x = hard_rows(length, inner, dtype)
        values, indices = kernel(x)
        expected_values, expected_indices = reference(x)
        assert values.dtype == dtype and indices.dtype == torch.long
        torch.testing.assert_close(values, expected_values, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(indices, expected_indices), f"length {length}"


def test_kernel_reads_non_contiguous_input(kernel):
    x = torch.randn(6, 50, 4)[:, ::2, 1:2]  # strided in two dims
    values, indices = kernel(x)
    expected_values, expected_indices = reference(x)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0)
    assert torch.equal(indices, expected_indices)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, 3), "expects \\(outer, len, inner\\) with len > 0"),
        (torch.randn(2, 0, 3), "expects \\(outer, len, inner\\) with len > 0"),
        (torch.randint(0, 5, (2, 3, 1)), "not implemented for 'Long'"),
    ],
)
def test_kernel_rejects_what_it_cannot_reduce(kernel, bad, message):
    with pytest.raises(RuntimeError, match=message):
        kernel(bad)


def test_switch_off_skips_the_build(monkeypatch, fresh_switch):
    monkeypatch.setenv(ENV_VAR, "0")
    monkeypatch.setattr(kernel_module, "_build", lambda: pytest.fail("built although switched off"))
    assert cpu_max_min() is None


@pytest.fixture
def no_compiler(monkeypatch, fresh_switch):
    """The build fails as it does on a machine without a C++ compiler."""

    def build():
        raise OSError("c++: command not found")

    monkeypatch.setattr(kernel_module, "_build", build)


def test_failed_build_warns_once_and_pools_with_torch(monkeypatch, no_compiler):
    monkeypatch.setenv(ENV_VAR, "auto")
    with pytest.warns(RuntimeWarning, match=r"did not build \(c\+\+: command not found\); .*torch.max"):
        assert cpu_max_min() is None
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    global_max_min(x).sum().backward()  # pools all the same, without the kernel
    assert torch.count_nonzero(x.grad.flatten(2), dim=2).eq(2).all()


def test_failed_build_is_an_error_when_the_kernel_is_required(monkeypatch, no_compiler):
    monkeypatch.setenv(ENV_VAR, "1")
    with pytest.raises(RuntimeError, match=r"CPU_KERNEL=1 but the CPU max/min kernel did not build"):
        cpu_max_min()


def test_bad_switch_value_names_it_and_the_allowed_ones(monkeypatch, fresh_switch):
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=r"CPU_KERNEL='fast' is not allowed; use one of auto, 1, 0"):
        cpu_max_min()


BUILD_CHECK = textwrap.dedent(
    """
    import torch
    from spe_lightning.kernels.cpu_max_min import cpu_max_min, extension_name
    kernel = cpu_max_min()
    assert kernel is not None
    x = torch.randn(64, 100, 1)
    x[3, 7:] = float("nan")
    values, indices = kernel(x)
    assert torch.equal(indices[..., 0], torch.stack((x.max(1)[1][:, 0], x.min(1)[1][:, 0])))
    columns = x.view(4, 16, 100).transpose(1, 2).contiguous()
    assert torch.equal(kernel(columns)[1].reshape(2, 64), indices.view(2, 64))
    print(extension_name())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_kernel_builds_and_runs_for_other_instruction_sets(capability):
    """Each ATen CPU capability gets its own build (and name, so machines sharing a cache never mix them)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, ENV_VAR: "1"}
    done = subprocess.run(
        [sys.executable, "-c", BUILD_CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"spe_lightning_max_min_{capability}_torch" in done.stdout
    assert "CUDA" not in done.stderr  # cpp_extension's warning about a CUDA toolkit without a GPU


def test_the_build_is_named_after_its_source(monkeypatch, tmp_path):
    """Two checkouts with different kernel sources never load each other's build (nor rebuild at every
    switch between them): the source's hash is part of the extension's name."""
    here = extension_name()
    changed = tmp_path / "max_min.cpp"
    changed.write_text(kernel_module._SOURCE.read_text() + "\n// another checkout\n")
    monkeypatch.setattr(kernel_module, "_SOURCE", changed)
    assert extension_name() != here
    assert extension_name().rsplit("_", 1)[0] == here.rsplit("_", 1)[0]  # same machine and torch
