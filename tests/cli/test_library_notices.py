"""Quiet runs: the library notices that are not about the user's setup are silenced, others still show."""

from __future__ import annotations

import warnings

from spe_lightning.__main__ import dispatch


def test_a_fit_prints_none_of_the_silenced_notices(tmp_path, monkeypatch, capfd):
    """Lightning's LeafSpec deprecation, its litmodels and litlogger tips and the weights_only notice are
    not printed; a warning about the user's own setup (fewer batches than the logging interval) still is."""
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dispatch(["fit", "--config", "quickstart.yaml", "--trainer.max_epochs", "1",
                  "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                  "--model.backbone_kwargs", "{depth: 8, block: basic}"])  # fmt: skip
    captured = capfd.readouterr()
    log = captured.out + captured.err + "\n".join(str(w.message) for w in caught)
    for noise in ("LeafSpec", "litmodels", "litlogger", "Tip:", "weights_only", "configure_optimizers"):
        assert noise not in log, noise
    assert "best val/acc1 =" in log
    assert "The number of training batches (2) is smaller than the logging interval" in log
