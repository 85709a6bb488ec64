"""Where a dataset's raw rows come from: the embedded generator or a folder under the data root
(which folders hold datasets: `genrec_ml.data.folders.scan_data_root`)."""

from __future__ import annotations

from pathlib import Path

from genrec_ml.data.raw import RawDataset
from genrec_ml.data.readers import read_dataset
from genrec_ml.data.synthetic import SyntheticConfig, generate_synthetic

SYNTHETIC = "synthetic"


def load_raw_dataset(name: str, data_root: str | Path | None, synthetic: SyntheticConfig) -> RawDataset:
    if name == SYNTHETIC:
        return generate_synthetic(synthetic)
    if not data_root:
        raise FileNotFoundError(f"dataset {name!r} needs GENREC_DATA_ROOT pointing at the folder that holds {name}/")
    folder = Path(data_root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}; datasets are sub-folders of GENREC_DATA_ROOT={data_root}")
    return read_dataset(folder)
