"""Datasets: BEIR-layout IR collections, named-dataset resolution, vector sets."""

from workbench.data.beir import BeirDataset, load_beir
from workbench.data.registry import (
    KNOWN_DATASETS,
    find_dataset,
    list_datasets,
    load_dataset,
)

__all__ = ["BeirDataset", "load_beir", "load_dataset", "find_dataset", "list_datasets", "KNOWN_DATASETS"]
