"""Data sets as framework-free NumPy arrays; see `load_dataset`."""
from edgepack.toolkit.data.dataset import Dataset, augment_crop_flip, iterate_batches, normalize
from edgepack.toolkit.data.sources import DATASETS, load_dataset

__all__ = ["Dataset", "DATASETS", "load_dataset", "iterate_batches", "normalize", "augment_crop_flip"]
