import numpy as np
import pandas as pd
import pytest

from genrec_ml.config import PropagationConfig
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.graph.propagation import hop_weights, propagate, propagate_dense_reference


def _graph(seed, n=30, n_edges=60):
    rng = np.random.default_rng(seed)
    dense = np.zeros((n, n))
    for _ in range(n_edges):
        i, j = rng.integers(0, n - 5, 2)  # the last 5 items stay isolated
        if i != j:
            w = rng.integers(1, 5)
            dense[i, j] = dense[j, i] = w
    src, dst = np.nonzero(dense)
    edges = pd.DataFrame({"src_item_index": src, "dst_item_index": dst, "weight": dense[src, dst].astype(int)})
    return rng.normal(size=(n, 8)).astype(np.float32), edges, dense


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha,hops", [(0.2, 3), (0.5, 1), (1.0, 2), (0.1, 0)])
def test_sparse_matches_dense_reference(seed, alpha, hops):
    x, edges, dense = _graph(seed)
    config = PropagationConfig(alpha=alpha, hops=hops)
    np.testing.assert_allclose(propagate(x, edges, config), propagate_dense_reference(x, dense, config),
                               rtol=1e-5, atol=1e-6)


def test_isolated_items_keep_text_embedding_and_connected_ones_move():
    x, edges, dense = _graph(0)
    out = propagate(x, edges, PropagationConfig(alpha=0.2, hops=3))
    np.testing.assert_array_equal(out[-5:], x[-5:])
    connected = dense.sum(axis=1) > 0
    assert np.abs(out[connected] - x[connected]).max() > 1e-3


def test_two_node_hand_example():
    # A = [[0,1],[1,0]] -> Â = A. alpha=0.5, K=1: H1 = 0.5*Â x + 0.5 x; beta = [2/3, 1/3]
    x = np.array([[1.0], [3.0]], np.float32)
    edges = pd.DataFrame({"src_item_index": [0, 1], "dst_item_index": [1, 0], "weight": [4, 4]})
    out = propagate(x, edges, PropagationConfig(alpha=0.5, hops=1))
    h1 = np.array([[0.5 * 3 + 0.5 * 1], [0.5 * 1 + 0.5 * 3]])
    np.testing.assert_allclose(out, 2 / 3 * x + 1 / 3 * h1, rtol=1e-6)
    np.testing.assert_allclose(hop_weights(PropagationConfig(alpha=0.5, hops=1)), [2 / 3, 1 / 3])


def test_nan_embedding_names_the_row():
    x, edges, _ = _graph(0)
    x[7, 2] = np.nan
    with pytest.raises(GenrecDataError, match="item_index 7"):
        propagate(x, edges, PropagationConfig())


def test_bad_alpha():
    with pytest.raises(GenrecConfigError, match="alpha"):
        PropagationConfig(alpha=0)


def test_collaborative_embeddings_separate_graph_communities():
    from genrec_ml.graph.spectral import collaborative_embeddings

    # two cliques of 6 items joined by one weak edge, plus 2 isolated items
    n = 14
    pairs = [(i, j) for block in (range(0, 6), range(6, 12)) for i in block for j in block if i != j]
    pairs += [(5, 6), (6, 5)]
    edges = pd.DataFrame(pairs, columns=["src_item_index", "dst_item_index"]).assign(weight=1)
    text = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    emb = collaborative_embeddings(edges, text, dim=2)
    again = collaborative_embeddings(edges, text, dim=2)
    np.testing.assert_array_equal(emb, again)
    unit = emb[:12] / np.linalg.norm(emb[:12], axis=1, keepdims=True)
    sims = unit @ unit.T
    assert sims[0, 1] > 0.9 and sims[7, 8] > 0.9  # same community: near-identical direction
    assert sims[0, 8] < sims[0, 1] - 0.5  # different communities: clearly apart
    assert np.abs(emb[12:]).sum() > 0  # cold items get a text-based estimate, not zeros
