"""Training with Lightning: the LightningModule, its metrics, recipe and speed options, loggers and callbacks.

- :mod:`.classifier`: :class:`ImageClassifier`, any backbone with any attention, the paper's loss;
- :mod:`.recipe`: the paper's optimizer and scheduler, written once;
- :mod:`.metrics`: top-k accuracy without host syncs;
- :mod:`.speed`: channels_last and ``torch.compile`` of the network;
- :mod:`.loggers`, :mod:`.subrun_writers`: TensorBoard in the project's layout;
- :mod:`.callbacks`: the pooling monitor, crash safety, CPU threads, predictions, the HParams view.
"""

from spe_lightning.training.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
