"""Lightning callbacks."""

from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter

__all__ = ["CSVPredictionWriter"]
