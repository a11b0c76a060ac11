"""CPU threads that follow the machine's load (the measurements are in benchmarks.busy_machine)."""

from __future__ import annotations

import subprocess
import sys
import time

import lightning as L
import pytest
import torch
from helpers.processes import TIMEOUT

from spe_lightning.core.errors import InputError
from spe_lightning.data import DigitsDataModule
from spe_lightning.training.callbacks.cpu_threads import CPUThreads, available_cores, others_running
from spe_lightning.training.classifier import ImageClassifier


@pytest.mark.parametrize(("others", "cores", "threads"), [(0.0, 2, 2), (0.4, 2, 2), (0.8, 2, 1), (2.0, 2, 1),
                                                          (5.0, 16, 11), (None, 4, 4)])  # fmt: skip
def test_auto_uses_the_cores_other_processes_leave(others, cores, threads):
    callback = CPUThreads()
    callback.cores, callback.probe = cores, lambda: others
    assert callback.target() == threads


@pytest.mark.slow
def test_a_busy_process_that_is_not_ours_is_counted_and_our_own_threads_are_not():
    quiet = others_running(samples=20)
    # a grandchild (the shell exits at once), so not one of our DataLoader-style children
    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
    subprocess.run(["sh", "-c", f"{sys.executable} -c '{spin}' &"], check=True, timeout=TIMEOUT)
    time.sleep(0.5)
    busy = others_running(samples=20)
    assert busy >= quiet + 0.5
    assert available_cores() >= 1


def _fit(threads, monkeypatch) -> list[int]:
    seen: list[int] = []

    class Record(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            seen.append(torch.get_num_threads())

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    data = DigitsDataModule(image_size=8, in_chans=1, batch_size=64)
    model = ImageClassifier(num_classes=10, in_chans=1, backbone_kwargs={"depth": 8, "block": "basic"})
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[CPUThreads(threads), Record()],
    )  # fmt: skip
    trainer.fit(model, data)
    return seen


def test_a_fixed_count_applies_during_training_and_the_process_gets_its_own_back(monkeypatch):
    before = torch.get_num_threads()
    assert _fit(1, monkeypatch) == [1, 1, 1, 1]
    assert torch.get_num_threads() == before


def test_auto_reads_the_load_at_every_epoch_start(monkeypatch):
    loads = iter([0.0, 5.0, 0.0])  # setup, epoch 0, epoch 1
    monkeypatch.setattr(CPUThreads, "target", lambda self: max(1, round(self.cores - next(loads))))
    seen = _fit("auto", monkeypatch)
    if available_cores() >= 2:
        assert seen == [1, 1, available_cores(), available_cores()]
    else:
        assert seen == [1, 1, 1, 1]


def test_an_explicit_omp_num_threads_is_the_users_choice(monkeypatch):
    monkeypatch.setattr(CPUThreads, "target", lambda self: pytest.fail("auto must not probe"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    callback = CPUThreads()
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[callback])
    before = torch.get_num_threads()
    callback.setup(trainer, None, "fit")
    assert torch.get_num_threads() == before and callback.initial is None


def test_cpu_ddp_ranks_share_the_cores_and_lightnings_own_setting_is_refined(monkeypatch):
    """Lightning's DDP launcher sets OMP_NUM_THREADS after the run is configured: not the user's choice."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("spe_lightning.training.callbacks.cpu_threads.available_cores", lambda: 8)
    callback = CPUThreads()
    callback.probe = lambda: 1.0  # one core busy elsewhere
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, callbacks=[callback])
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # as the launcher does in every rank
    before = torch.get_num_threads()
    try:
        callback.setup(trainer, None, "fit")
        assert callback.cores == 4 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, "all", 1.5])
def test_bad_thread_settings_name_the_value(bad):
    with pytest.raises(InputError, match=rf"cpu_threads.threads={bad!r} is not allowed; use auto, torch"):
        CPUThreads(bad)
