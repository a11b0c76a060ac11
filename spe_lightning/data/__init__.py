"""LightningDataModules: CIFAR-10/100, ImageNet-style folders and the offline digits (packaged)."""

from spe_lightning.data.base import ImageDataModule, TransformedSubset
from spe_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from spe_lightning.data.digits import DigitsDataModule
from spe_lightning.data.image_files import ImageFileDataset
from spe_lightning.data.image_folder import ImageFolderDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "ImageDataModule",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "TransformedSubset",
]
