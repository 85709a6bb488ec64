import pytest

from tests.assets.pipeline import materialize


@pytest.fixture(scope="session")
def synthetic_warehouse(tmp_path_factory):
    """A warehouse with the tiny `synthetic` partition fully materialized once for the session."""
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    result = materialize(path)
    return path, result
