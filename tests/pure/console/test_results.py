"""The query editor's result table: each Data API field as text, errors as the Data API reports them."""

from __future__ import annotations

from borealis.console._app import _result_markup


def test_fields_as_text() -> None:
    result = {
        "columnMetadata": [{"label": "n"}, {"label": "b"}, {"label": "t"}, {"label": "bytes"}, {"label": "arr"}],
        "records": [
            [
                {"longValue": 42},
                {"booleanValue": False},
                {"isNull": True},
                {"blobValue": b"\x00\xff"},
                {"arrayValue": {"longValues": [1, 2]}},
            ]
        ],
    }
    out = _result_markup(result)
    cells = out.split("<tbody>")[1]
    assert "<td>42</td><td>false</td><td>NULL</td><td>AP8=</td>" in cells
    assert "<td>{&quot;longValues&quot;: [1, 2]}</td>" in cells
    assert '<th scope="col">bytes</th>' in out and "1 row." in out


def test_errors_and_counts() -> None:
    error = _result_markup({"error": ("DatabaseErrorException", 'ERROR: syntax error at or near "<"')})
    assert 'role="alert"' in error and "DatabaseErrorException" in error
    assert "&quot;&lt;&quot;" in error and '"<"' not in error
    assert "Records updated: 3." in _result_markup({"numberOfRecordsUpdated": 3, "generatedFields": []})
    assert "No rows." in _result_markup({"columnMetadata": [{"label": "x"}], "records": []})
