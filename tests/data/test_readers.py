import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrec_ml.data.readers import (
    FORMATS,
    detect_format,
    read_amazon,
    read_dataset,
    read_generic,
    read_microlens,
)
from genrec_ml.errors import GenrecDataError


def _write(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        if name.endswith(".gz"):
            data = gzip.compress(data)
        (folder / name).write_bytes(data)
    return folder


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _interactions(rows, source_file):
    """Expected table, built independently of the reader: rows of (user, item, ts, pos, line)."""
    users, items, seconds, positions, lines = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "user_id": list(users),
            "item_id": list(items),
            "timestamp": pd.array(seconds, dtype="Int64"),
            "position": pd.array(positions, dtype="Int64"),
            "source_file": source_file,
            "source_line": np.array(lines, dtype=np.int64),
        }
    )


def _items(rows, source_file, brands=None):
    """rows of (item, title, description, categories, line); brands '' unless given."""
    ids, titles, descriptions, categories, lines = zip(*rows, strict=True)
    frame = pd.DataFrame(
        {
            "item_id": list(ids),
            "title": list(titles),
            "description": list(descriptions),
            "categories": pd.Series(list(categories), dtype=object),
            "brand": list(brands or [""] * len(ids)),
            "source_file": source_file,
            "source_line": np.array(lines, dtype=np.int64),
        }
    )
    return frame


def _raises(reader, folder, file_name, line, field, words):
    with pytest.raises(GenrecDataError) as caught:
        reader(folder)
    error = caught.value
    assert error.path is not None and Path(error.path).name == file_name, str(error)
    assert error.line == line, str(error)
    assert error.field == field, str(error)
    message = str(error)
    assert file_name in message
    for word in words:
        assert word in message, message
    return error


# --- generic ------------------------------------------------------------------------------------

GENERIC_ITEMS = "item_id,title\na,A\nb,B\nc,C\n"


def test_generic_csv_reads_exact_frames(tmp_path):
    folder = _write(
        tmp_path,
        {
            "interactions.csv": _crlf(
                "user_id,item_id,timestamp,position\n"
                "u1,a,1400000000,0\n"
                "u1, b ,2014-05-13T16:53:20Z,1\n"
                "\n"
                "u2,a,,0\n"
                "u2,c,2014-05-13 16:53:21+01:00,\n"
                "u2,NA,1.9,2\n"
            ),
            "items.csv": _crlf(
                "item_id,title,description,categories,attributes\n"
                'a,Alpha,"An alpha, first",Beauty|Skin,12 7\n'
                "b,Beta,,,\n"
                'c,"Gamma, the third",desc,Beauty| |Makeup,\n'
                "NA,Null item,,,\n"
            ),
        },
    )
    data = read_generic(folder)
    expected = _interactions(
        [
            ("u1", "a", 1400000000, 0, 2),
            ("u1", "b", 1400000000, 1, 3),
            ("u2", "a", None, 0, 5),
            ("u2", "c", 1399996401, None, 6),
            ("u2", "NA", 1, 2, 7),
        ],
        "interactions.csv",
    )
    pd.testing.assert_frame_equal(data.interactions, expected)
    expected_items = _items(
        [
            ("a", "Alpha", "An alpha, first", ["Beauty", "Skin", "12", "7"], 2),
            ("b", "Beta", "", [], 3),
            ("c", "Gamma, the third", "desc", ["Beauty", "Makeup"], 4),
            ("NA", "Null item", "", [], 5),
        ],
        "items.csv",
    )
    pd.testing.assert_frame_equal(data.items, expected_items)
    assert data.report == {"blank_lines_skipped": 1, "duplicate_item_rows_dropped": 0}


def test_generic_items_keep_an_optional_brand(tmp_path):
    folder = _write(tmp_path, {"interactions.csv": "user_id,item_id,position\nu,a,0\nu,b,1\n",
                               "items.csv": "item_id,title,brand\na,A, OPI \nb,B,\n"})
    assert read_generic(folder).items["brand"].tolist() == ["OPI", ""]


def test_generic_accepts_elapsed_s_and_position_only(tmp_path):
    with_elapsed = _write(
        tmp_path / "elapsed",
        {
            "interactions.csv": "user_id,item_id,position,elapsed_s\nu,a,0,0\nu,b,1,86400\n",
            "items.csv": GENERIC_ITEMS,
        },
    )
    assert read_generic(with_elapsed).interactions["timestamp"].tolist() == [0, 86400]
    position_only = _write(
        tmp_path / "position",
        {
            "interactions.csv": "user_id,item_id,position\nu,a,1\nu,b,0\n",
            "items.csv": GENERIC_ITEMS,
        },
    )
    read = read_generic(position_only).interactions
    assert read["position"].tolist() == [1, 0]
    assert read["timestamp"].isna().all() and str(read["timestamp"].dtype) == "Int64"


def test_generic_parquet_reads_typed_columns(tmp_path):
    pd.DataFrame(
        {
            "user_id": [7, 7, 8],
            "item_id": ["a", "b", "a"],
            "timestamp": pd.to_datetime(["2014-05-13T16:53:20", None, "1970-01-01T00:00:05"]),
            "position": pd.array([0, 1, None], dtype="Int64"),
        }
    ).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]}).to_parquet(
        tmp_path / "items.parquet"
    )
    data = read_generic(tmp_path)
    expected = _interactions(
        [
            ("7", "a", 1400000000, 0, 1),
            ("7", "b", None, 1, 2),
            ("8", "a", 5, None, 3),
        ],
        "interactions.parquet",
    )
    pd.testing.assert_frame_equal(data.interactions, expected)
    assert data.items["source_line"].tolist() == [1, 2]
    assert data.items["description"].tolist() == ["", ""]


def test_identical_item_rows_are_dropped_and_counted(tmp_path):
    folder = _write(
        tmp_path,
        {
            "interactions.csv": "user_id,item_id,position\nu,a,0\n",
            "items.csv": "item_id,title,categories\na,A,x|y\nb,B,\na,A,x|y\na,A,x|y\n",
        },
    )
    data = read_generic(folder)
    assert data.items["item_id"].tolist() == ["a", "b"]
    assert data.items["source_line"].tolist() == [2, 3]
    assert data.report["duplicate_item_rows_dropped"] == 2


INTERACTIONS_HEADER = "user_id,item_id,timestamp,position\n"
BAD_GENERIC = {
    "empty file": ("interactions.csv", b"", None, None, ["empty"]),
    "header only": ("interactions.csv", INTERACTIONS_HEADER, None, None, ["no data rows"]),
    "missing item_id": (
        "interactions.csv",
        "user_id,timestamp\nu,1\n",
        None,
        "item_id",
        ["missing", "['user_id', 'timestamp']"],
    ),
    "no order column": (
        "interactions.csv",
        "user_id,item_id\nu,a\n",
        None,
        "timestamp",
        ["position"],
    ),
    "not utf-8": (
        "interactions.csv",
        INTERACTIONS_HEADER.encode() + b"u,a,1,0\nu,\xff\xfe,2,1\n",
        3,
        None,
        ["UTF-8"],
    ),
    "too many fields": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\nu,b,2,1,9\n",
        3,
        None,
        ["field count is 5"],
    ),
    "too few fields": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\nu,b,2\n",
        3,
        None,
        ["field count is 3"],
    ),
    "fractional position": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\nu,b,2,1.5\n",
        3,
        "position",
        ["1.5"],
    ),
    "word position": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,first\n",
        2,
        "position",
        ["first"],
    ),
    "negative position": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,-1\n",
        2,
        "position",
        ["-1"],
    ),
    "bad timestamp": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\nu,b,yesterday,1\n",
        3,
        "timestamp",
        ["ISO-8601"],
    ),
    "empty user": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\n  ,b,2,1\n",
        3,
        "user_id",
        ["empty"],
    ),
    "empty item": ("interactions.csv", INTERACTIONS_HEADER + "u,,1,0\n", 2, "item_id", ["empty"]),
    "no time nor position": (
        "interactions.csv",
        INTERACTIONS_HEADER + "u,a,1,0\nu,b,,\n",
        3,
        "timestamp",
        ["neither"],
    ),
    "repeated header": (
        "interactions.csv",
        "user_id,item_id,user_id\nu,a,u\n",
        1,
        "user_id",
        ["twice"],
    ),
    "conflicting items": (
        "items.csv",
        "item_id,title\na,A\nb,B\na,Another A\n",
        4,
        "item_id",
        ["line 2"],
    ),
    "items without title": ("items.csv", "item_id,name\na,A\n", None, "title", ["'name'"]),
}


@pytest.mark.parametrize("case", BAD_GENERIC, ids=list(BAD_GENERIC))
def test_generic_bad_input_names_file_line_and_field(tmp_path, case):
    file_name, content, line, field, words = BAD_GENERIC[case]
    files = {"interactions.csv": INTERACTIONS_HEADER + "u,a,1,0\n", "items.csv": GENERIC_ITEMS}
    files[file_name] = content
    _raises(read_generic, _write(tmp_path, files), file_name, line, field, words)


def test_generic_needs_exactly_one_file_of_each_kind(tmp_path):
    folder = _write(tmp_path, {"interactions.csv": INTERACTIONS_HEADER + "u,a,1,0\n"})
    with pytest.raises(GenrecDataError, match="no items file.*items.csv or items.parquet"):
        read_generic(folder)
    pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "position": [0]}).to_parquet(
        folder / "interactions.parquet"
    )
    with pytest.raises(GenrecDataError, match="several interactions files"):
        read_generic(folder)


def test_large_csv_reads_every_row_with_its_line(tmp_path):
    # how fast: benchmarks/readers.py (timed asserts fail on a loaded machine and prove nothing)
    n = 200_000
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n // 10), 10)
    pd.DataFrame(
        {
            "user_id": [f"user{u}" for u in users],
            "item_id": [f"item{i}" for i in rng.integers(0, 20_000, n)],
            "position": np.tile(np.arange(10), n // 10),
            "elapsed_s": rng.integers(0, 10**8, n),
        }
    ).to_csv(tmp_path / "interactions.csv", index=False)
    pd.DataFrame({"item_id": [f"item{i}" for i in range(20_000)], "title": "t"}).to_csv(
        tmp_path / "items.csv", index=False
    )
    data = read_generic(tmp_path)
    assert len(data.interactions) == n
    assert data.interactions["source_line"].iloc[-1] == n + 1


# --- amazon -------------------------------------------------------------------------------------


def _json_lines(records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_amazon_2014_gz_with_python_literal_meta(tmp_path):
    reviews = _json_lines(
        [
            {"reviewerID": "R1", "asin": "A1", "unixReviewTime": 1400000000, "overall": 5.0},
            {"reviewerID": "R1", "asin": "A2", "unixReviewTime": 1300000000},
        ]
    )
    meta = (
        "{'asin': 'A1', 'title': 'Nail  <b>Polish</b> &amp; Top', 'description': 'Shiny.',"
        " 'categories': [['Beauty', 'Makeup', 'Nails'], ['Beauty', 'Tools']], 'brand': 'OPI'}\n"
        "\n"
        "{'asin': 'A2', 'categories': [['Beauty']], 'price': 3.5}\n"
        "{'asin': 'A2', 'categories': [['Beauty']], 'price': 3.5}\n"
    )
    folder = _write(tmp_path, {"reviews_Beauty_5.json.gz": reviews, "meta_Beauty.json.gz": meta})
    assert detect_format(folder) == "amazon"
    data = read_amazon(folder)
    expected = _interactions(
        [("R1", "A1", 1400000000, None, 1), ("R1", "A2", 1300000000, None, 2)],
        "reviews_Beauty_5.json.gz",
    )
    pd.testing.assert_frame_equal(data.interactions, expected)
    expected_items = _items(
        [
            ("A1", "Nail Polish & Top", "Shiny.", ["Beauty", "Makeup", "Nails", "Tools", "OPI"], 1),
            ("A2", "", "", ["Beauty"], 3),
        ],
        "meta_Beauty.json.gz",
        brands=["OPI", ""],
    )
    pd.testing.assert_frame_equal(data.items, expected_items)
    assert data.report == {"blank_lines_skipped": 1, "duplicate_item_rows_dropped": 1}


def test_amazon_2018_plain_json(tmp_path):
    reviews = _json_lines([{"reviewerID": "R9", "asin": "B1", "unixReviewTime": "1500000000"}])
    meta = _json_lines(
        [
            {
                "asin": "B1",
                "title": "Lip Balm",
                "description": ["<p>Soft</p>", "and   smooth"],
                "category": ["All Beauty", "</span>", "Lips"],
                "brand": "Lips",
            }
        ]
    )
    folder = _write(tmp_path, {"All_Beauty_5.json": reviews, "meta_All_Beauty.json": meta})
    data = read_dataset(folder)
    assert data.interactions["timestamp"].tolist() == [1500000000]
    assert data.interactions["position"].isna().all()
    row = data.items.iloc[0]
    assert (row["title"], row["description"]) == ("Lip Balm", "Soft and smooth")
    assert row["categories"] == ["All Beauty", "Lips"]
    assert row["brand"] == "Lips"


REVIEW = {"reviewerID": "R", "asin": "A", "unixReviewTime": 1}
REVIEWS_OK = _json_lines([REVIEW])
META_OK = _json_lines([{"asin": "A", "title": "t"}])
BAD_AMAZON = {
    "empty reviews": ("reviews_X.json", b"", None, None, ["empty"]),
    "blank reviews": ("reviews_X.json", "\n\n", None, None, ["no records"]),
    "malformed line": (
        "reviews_X.json",
        REVIEWS_OK + '{"reviewerID": "R", \n',
        2,
        None,
        ["neither JSON"],
    ),
    "not utf-8": (
        "reviews_X.json",
        REVIEWS_OK.encode() * 2 + b'{"asin": "\xff"}\n',
        3,
        None,
        ["UTF-8"],
    ),
    "not a record": ("reviews_X.json", REVIEWS_OK + "[1, 2]\n", 2, None, ["list"]),
    "missing reviewer": (
        "reviews_X.json",
        _json_lines([REVIEW, {"asin": "A", "unixReviewTime": 1}]),
        2,
        "reviewerID",
        ["missing"],
    ),
    "empty asin": ("reviews_X.json", _json_lines([{**REVIEW, "asin": " "}]), 1, "asin", ["empty"]),
    "bad time": (
        "reviews_X.json",
        _json_lines([{**REVIEW, "unixReviewTime": "May 1"}]),
        1,
        "unixReviewTime",
        ["unix seconds"],
    ),
    "conflicting meta": (
        "meta_X.json",
        META_OK + _json_lines([{"asin": "A", "title": "u"}]),
        2,
        "asin",
        ["line 1"],
    ),
}


@pytest.mark.parametrize("case", BAD_AMAZON, ids=list(BAD_AMAZON))
def test_amazon_bad_input_names_file_line_and_field(tmp_path, case):
    file_name, content, line, field, words = BAD_AMAZON[case]
    files = {"reviews_X.json": REVIEWS_OK, "meta_X.json": META_OK, file_name: content}
    _raises(read_amazon, _write(tmp_path, files), file_name, line, field, words)


def test_amazon_truncated_gz_says_fetch_again(tmp_path):
    folder = _write(tmp_path, {"meta_X.json": META_OK})
    (folder / "reviews_X.json.gz").write_bytes(gzip.compress(REVIEWS_OK.encode() * 50)[:30])
    _raises(read_amazon, folder, "reviews_X.json.gz", None, None, ["fetch it again"])


# --- microlens ----------------------------------------------------------------------------------

TITLES = _crlf('item,title\n1,"Funny cat, wow # comic # Two Yuan # comic"\n2,plain title\n3,x\n')


def test_microlens_tsv_and_titles(tmp_path):
    pairs = _crlf("10\t2 1 3\n11\t1\n")
    folder = _write(tmp_path, {"ML_pairs.tsv": pairs, "ML_titles.csv": TITLES, "readme": "x"})
    data = read_microlens(folder)
    expected = _interactions(
        [
            ("10", "2", None, 0, 1),
            ("10", "1", None, 1, 1),
            ("10", "3", None, 2, 1),
            ("11", "1", None, 0, 2),
        ],
        "ML_pairs.tsv",
    )
    pd.testing.assert_frame_equal(data.interactions, expected)
    expected_items = _items(
        [
            ("1", "Funny cat, wow # comic # Two Yuan # comic", "", ["comic", "Two Yuan"], 2),
            ("2", "plain title", "", [], 3),
            ("3", "x", "", [], 4),
        ],
        "ML_titles.csv",
    )
    pd.testing.assert_frame_equal(data.items, expected_items)


def test_microlens_prefers_pairs_csv_and_converts_milliseconds(tmp_path):
    folder = _write(
        tmp_path,
        {
            "ML_pairs.tsv": "10\t2 1\n",
            "ML_pairs.csv": "userID,videoID,timestamp\n10,2,1400000000123\n10,1,1400000001\n",
            "ML_titles.csv": TITLES,
        },
    )
    data = read_dataset(folder)
    assert data.interactions["source_file"].unique().tolist() == ["ML_pairs.csv"]
    assert data.interactions["timestamp"].tolist() == [1400000000, 1400000001]
    assert data.interactions["position"].isna().all()


BAD_MICROLENS = {
    "no tab": ("ML_pairs.tsv", "10\t1 2\n11 1 2\n", 2, None, ["field count is 1"]),
    "no items": ("ML_pairs.tsv", "10\t1 2\n11\t \n", 2, "items", ["no item ids"]),
    "empty user": ("ML_pairs.tsv", "10\t1 2\n\t3\n", 2, "user_id", ["empty"]),
    "not utf-8": ("ML_pairs.tsv", b"10\t1\n11\t2\n12\t\xc3\x28\n", 3, None, ["UTF-8"]),
    "unquoted comma": ("ML_titles.csv", "item,title\n1,a\n2,b, c\n", 3, None, ["field count is 3"]),
    "duplicate title": ("ML_titles.csv", "item,title\n1,a\n1,b\n", 3, "item", ["line 2"]),
    "titles header only": ("ML_titles.csv", "item,title\r\n", None, None, ["no data rows"]),
}


@pytest.mark.parametrize("case", BAD_MICROLENS, ids=list(BAD_MICROLENS))
def test_microlens_bad_input_names_file_line_and_field(tmp_path, case):
    file_name, content, line, field, words = BAD_MICROLENS[case]
    files = {"ML_pairs.tsv": "10\t1 2\n", "ML_titles.csv": TITLES, file_name: content}
    _raises(read_microlens, _write(tmp_path, files), file_name, line, field, words)


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["interactions.csv", "items.csv"], "generic"),
        (["interactions.parquet", "README.md"], "generic"),
        (["reviews_Beauty.json", "meta_Beauty.json"], "amazon"),
        (["Beauty_5.json.gz", "meta_Beauty.json.gz"], "amazon"),
        (["MicroLens-50k_pairs.tsv", "MicroLens-50k_titles.csv", "readme"], "microlens"),
    ],
)
def test_detect_format_from_file_names(tmp_path, names, expected):
    folder = _write(tmp_path, dict.fromkeys(names, "x"))
    assert detect_format(folder) == expected
    assert expected in FORMATS


def test_detect_format_explains_what_it_found_and_expects(tmp_path):
    folder = _write(tmp_path, {"ratings.dat": "x", "movies.dat": "x"})
    with pytest.raises(GenrecDataError) as caught:
        detect_format(folder)
    message = str(caught.value)
    assert str(folder) in message and "movies.dat, ratings.dat" in message
    assert (
        "interactions.csv" in message and "reviews_*.json" in message and "*_pairs.tsv" in message
    )
    _write(tmp_path, {"interactions.csv": "x", "reviews_A.json": "x"})
    with pytest.raises(GenrecDataError, match="several formats"):
        detect_format(folder)
    with pytest.raises(GenrecDataError, match="not a folder"):
        detect_format(tmp_path / "missing")


# --- real datasets ------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_amazon_beauty(shared_data):
    data = read_dataset(shared_data / "amazon-beauty")
    assert len(data.interactions) == 198_502
    assert len(data.items) == 12_101
    assert data.interactions["user_id"].nunique() == 22_363
    assert (
        data.interactions["timestamp"].notna().all() and data.interactions["position"].notna().all()
    )
    assert data.items["categories"].map(len).min() >= 1


@pytest.mark.shared_data
def test_real_microlens_50k(shared_data):
    data = read_dataset(shared_data / "microlens-50k")
    assert data.interactions["user_id"].nunique() == 50_000
    assert len(data.interactions) == 359_708
    assert len(data.items) == 19_220
    assert set(data.interactions["item_id"]) <= set(data.items["item_id"])
    assert data.items.loc[0, "categories"] == ["comic", "Two Yuan", "My destiny villain"]
