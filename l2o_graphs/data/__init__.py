"""Offline-first dataset loading (idx files, local caches); never a download in a hot path."""
from l2o_graphs.data.idx import DatasetCorruptError, read_idx
from l2o_graphs.data.images import DATASET_NAMES, DatasetNotFoundError, data_root, load_images

__all__ = ["load_images", "data_root", "read_idx", "DATASET_NAMES", "DatasetNotFoundError", "DatasetCorruptError"]
