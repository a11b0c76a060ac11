"""Lightning callbacks: pooling monitor, predictions, CPU threads, training speed, the crash-safety trio."""

from spe_lightning.training.callbacks.cpu_threads import CPUThreads
from spe_lightning.training.callbacks.fault_tolerance import FiniteLossGuard, LastCheckpoint, RandomState
from spe_lightning.training.callbacks.learning_rate import LearningRateLogger
from spe_lightning.training.callbacks.pooling_monitor import PoolingMonitor
from spe_lightning.training.callbacks.prediction_writer import CSVPredictionWriter
from spe_lightning.training.callbacks.throughput import TrainingThroughput

__all__ = [
    "CPUThreads",
    "CSVPredictionWriter",
    "FiniteLossGuard",
    "LastCheckpoint",
    "LearningRateLogger",
    "PoolingMonitor",
    "RandomState",
    "TrainingThroughput",
]
