"""Lightning callbacks."""

from spe_lightning.callbacks.pooling_monitor import PoolingMonitor
from spe_lightning.callbacks.prediction_writer import CSVPredictionWriter

__all__ = ["CSVPredictionWriter", "PoolingMonitor"]
