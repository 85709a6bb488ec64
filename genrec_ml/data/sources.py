"""Where a dataset's raw rows come from: the embedded generator or a folder under the data root."""

from __future__ import annotations

from pathlib import Path

from genrec_ml.data.raw import RawDataset
from genrec_ml.data.readers import detect_format, read_dataset
from genrec_ml.data.synthetic import SyntheticConfig, generate_synthetic

SYNTHETIC = "synthetic"


def discover_datasets(data_root: str | Path | None) -> list[str]:
    """`synthetic` plus every folder of the data root whose files a reader recognises."""
    names = [SYNTHETIC]
    if data_root and Path(data_root).is_dir():
        for folder in sorted(Path(data_root).iterdir()):
            if folder.is_dir() and folder.name != SYNTHETIC and _recognised(folder):
                names.append(folder.name)
    return names


def load_raw_dataset(name: str, data_root: str | Path | None, synthetic: SyntheticConfig) -> RawDataset:
    if name == SYNTHETIC:
        return generate_synthetic(synthetic)
    if not data_root:
        raise FileNotFoundError(f"dataset {name!r} needs GENREC_DATA_ROOT pointing at the folder that holds {name}/")
    folder = Path(data_root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}; datasets are sub-folders of GENREC_DATA_ROOT={data_root}")
    return read_dataset(folder)


def _recognised(folder: Path) -> bool:
    try:
        detect_format(folder)
    except ValueError:
        return False
    return True
