import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seedlab.errors import SeedlabError
from seedlab.store.predictions import read_predictions, write_predictions


def test_classification_round_trip_has_the_documented_schema(tmp_path):
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    path = write_predictions(tmp_path / "p.parquet", ["a", "b", "c"], [1, 0, 0], [1, 0, 0], probs)
    schema = pq.read_schema(path)
    assert schema.field("instance_id").type == pa.string()
    assert schema.field("label").type == pa.int64() and schema.field("prediction").type == pa.int64()
    assert schema.field("probs").type == pa.list_(pa.float32())
    back = read_predictions(path)
    assert list(back.instance_ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(back.probs, probs)


def test_regression_round_trip_has_no_probs(tmp_path):
    path = write_predictions(tmp_path / "r.parquet", ["a", "b"], [0.5, 4.0], np.array([1.0, 3.5], np.float32))
    back = read_predictions(path)
    assert back.probs is None and back.predictions.dtype == np.float32


@pytest.mark.parametrize("table,message", [
    (pa.table({"instance_id": ["a"], "label": [1]}), r"missing column\(s\) \['prediction'\]"),
    (pa.table({"instance_id": ["a", "a"], "label": [1, 1], "prediction": [1, 0]}), "duplicate instance_id"),
    (pa.table({"instance_id": ["a", "b"], "label": [1, 1], "prediction": [1, 0],
               "probs": [[0.5, 0.5], [1.0]]}), "unequal lengths"),
])
def test_malformed_artifacts_get_one_line_errors(tmp_path, table, message):
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(SeedlabError, match=message):
        read_predictions(path, source="run X")


def test_a_non_parquet_file_is_named(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    with pytest.raises(SeedlabError, match=r"malformed predictions artifact \(run X\): not a readable parquet"):
        read_predictions(path, source="run X")
