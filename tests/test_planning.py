import dask
import dask.array as da
import pytest

from bigdist.planning import even_blocks, query_blocks


@pytest.mark.parametrize(("n_rows", "max_rows"), [(10, 4), (1, 5), (4096, 4096), (10_000, 3)])
def test_even_blocks_are_the_fewest_and_differ_by_at_most_one(n_rows, max_rows):
    blocks = even_blocks(n_rows, max_rows)
    assert sum(blocks) == n_rows
    assert max(blocks) <= max_rows
    assert len(blocks) == -(-n_rows // max_rows)
    assert max(blocks) - min(blocks) <= 1


def test_wide_query_blocks_stay_within_chunk_bytes():
    queries = da.zeros((10_000, 1024), dtype="float32", chunks=(10_000, 1024))
    with dask.config.set({"bigdist.chunk-bytes": 1 << 20, "bigdist.knn.query-block-rows": 4096}):
        wide = query_blocks(queries)
        narrow = query_blocks(queries[:, :8])
    assert max(wide.chunks[0]) * 1024 * 4 <= 1 << 20
    assert narrow.chunks[0] == (3334, 3333, 3333)  # narrow rows: query-block-rows decides
