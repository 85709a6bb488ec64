"""Every codebook variant materialized on the tiny `synthetic` partition, then queried in SQL."""

import shutil

import numpy as np
import pytest

from genrec_assets.defs.codebooks.assets import VARIANT_INPUTS
from genrec_ml import warehouse
from genrec_ml.tokenizers import load_tokenizer
from tests.assets.pipeline import TINY_CODEBOOKS, materialize, run_check

pytestmark = pytest.mark.slow
CODEBOOKS = [f"{variant}_codebook" for variant in VARIANT_INPUTS]


@pytest.fixture(scope="module")
def codebook_warehouse(synthetic_warehouse, tmp_path_factory):
    source, _ = synthetic_warehouse
    path = tmp_path_factory.mktemp("codebooks") / "warehouse.duckdb"
    shutil.copy(source, path)
    result = materialize(path, run_config=TINY_CODEBOOKS, selection=CODEBOOKS)
    return path, result


def test_all_variants_and_their_checks_succeed(codebook_warehouse):
    path, result = codebook_warehouse
    assert result.success
    checks = [e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 3 * len(CODEBOOKS) and all(c.passed for c in checks)
    with warehouse.connect(path, read_only=True) as con:
        util = con.execute("SELECT tokenizer, level, codebook_size, used_codes, cur, icr, collision_rate "
                           "FROM codebook_utilization WHERE dataset = 'synthetic' ORDER BY ALL").df()
        n_items = con.execute("SELECT count(*) FROM items WHERE dataset = 'synthetic'").fetchone()[0]
        per_tokenizer = dict(con.execute("SELECT tokenizer, count(DISTINCT item_index) FROM item_semantic_ids "
                                         "GROUP BY tokenizer").fetchall())
    assert set(util["tokenizer"]) == set(VARIANT_INPUTS)
    assert (util["codebook_size"] == 16).all() and (util["used_codes"] <= 16).all()
    assert ((util["icr"] > 0) & (util["icr"] <= 1)).all()
    assert per_tokenizer == {variant: n_items for variant in VARIANT_INPUTS}


def test_saved_codebook_reproduces_the_stored_sids(codebook_warehouse):
    path, _ = codebook_warehouse
    folder = path.parent / "artifacts" / "synthetic" / "rq_vae"
    tokenizer = load_tokenizer(folder / "tokenizer.pt")
    with warehouse.connect(path, read_only=True) as con:
        _, x = warehouse.read_vectors(con, "item_text_embeddings", "synthetic")
        stored = con.execute("SELECT code FROM item_semantic_ids WHERE dataset = 'synthetic' AND tokenizer = 'rq_vae' "
                             "ORDER BY item_index, level").fetchnumpy()["code"]
    levels = len(tokenizer.codebook_sizes) + 1
    np.testing.assert_array_equal(tokenizer.encode(x), stored.reshape(-1, levels)[:, :-1])
    assert (folder / "coarse_clusters.npz").exists() and (folder / "code_usage.png").stat().st_size > 1000


def test_same_seed_same_sids(codebook_warehouse, tmp_path):
    path, _ = codebook_warehouse
    again = tmp_path / "again.duckdb"
    shutil.copy(path, again)
    ops = {k: v for k, v in TINY_CODEBOOKS["ops"].items() if k.startswith("rq_vae_codebook")}
    materialize(again, run_config={"ops": ops}, selection=["rq_vae_codebook"])
    query = "SELECT item_index, level, code FROM item_semantic_ids WHERE tokenizer = 'rq_vae' ORDER BY ALL"
    with warehouse.connect(path, read_only=True) as a, warehouse.connect(again, read_only=True) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


@pytest.mark.parametrize("check_name,planted", [
    ("sids_complete", "DELETE FROM item_semantic_ids WHERE tokenizer = 'rq_kmeans' AND item_index = 0 AND level = 1"),
    ("sids_in_range", "UPDATE item_semantic_ids SET code = 99 WHERE tokenizer = 'rq_kmeans' AND level = 0 "
                      "AND item_index = 3"),
    ("icr_above_floor", "UPDATE codebook_utilization SET icr = 0.01 WHERE tokenizer = 'rq_kmeans'"),
])
def test_codebook_checks_fail_on_planted_bad_data(codebook_warehouse, tmp_path, check_name, planted):
    path, _ = codebook_warehouse
    copy = tmp_path / "bad.duckdb"
    shutil.copy(path, copy)
    assert run_check(copy, check_name, tokenizer="rq_kmeans")
    with warehouse.connect(copy) as con:
        con.execute(planted)
    assert not run_check(copy, check_name, tokenizer="rq_kmeans")


def test_duplicate_full_sids_fail_the_range_check(codebook_warehouse, tmp_path):
    path, _ = codebook_warehouse
    copy = tmp_path / "dup.duckdb"
    shutil.copy(path, copy)
    with warehouse.connect(copy) as con:
        con.execute("""UPDATE item_semantic_ids AS s SET code = o.code FROM item_semantic_ids AS o
                       WHERE s.tokenizer = 'rq_kmeans' AND o.tokenizer = 'rq_kmeans'
                         AND s.item_index = 1 AND o.item_index = 0 AND s.level = o.level""")
    assert not run_check(copy, "sids_in_range", tokenizer="rq_kmeans")
