"""Issue 11's defects on the DMU: bad input is a 4xx with a reason, never a 500; weights that
overflow are refused; timestamps are aware on every database; every status is documented."""

from __future__ import annotations

import json
from datetime import datetime

import httpx
import pytest

from heurimentor.contracts.bounds import INT32_MAX, INT64_MAX
from tests.dmu.testlib import add_sources, auth


def _assert_422_list(response: httpx.Response) -> list[dict]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail and all({"loc", "msg", "type"} <= d.keys() for d in detail), detail
    return detail


def _mixture(http: httpx.Client, name: str = "main") -> httpx.Response:
    add_sources(http, "web-en", "books-zh")
    response = http.post("/mixtures", json={"name": name, "weights": {"web-en": 3, "books-zh": 1}}, headers=auth())
    assert response.status_code == 201, response.text
    return response


def test_ids_and_versions_past_the_columns_are_a_422_even_without_a_token(http: httpx.Client) -> None:
    # `GET /runs/9223372036854775808` was a 500 without a token (an int8 overflow in the driver).
    _mixture(http)
    anonymous = {"Authorization": ""}
    for path in (
        f"/runs/{INT64_MAX + 1}",
        f"/runs/{INT32_MAX + 1}",
        f"/mixtures/main/versions/{INT64_MAX + 1}",
        "/mixtures/main/versions/0",
    ):
        _assert_422_list(http.get(path, headers=anonymous))
    assert http.get(f"/runs/{INT32_MAX}").status_code == 404
    # A version past int4 is a plain 404 now that versions are 64-bit (was a 500 on PostgreSQL).
    missing = http.get(f"/mixtures/main/versions/{INT32_MAX + 1}")
    assert missing.status_code == 404 and "has no version" in missing.json()["detail"]


def test_nul_and_lone_surrogates_are_a_422(http: httpx.Client) -> None:
    # `GET /mixtures/main%00` was a 500 on PostgreSQL; a lone surrogate in `reason` crashed the 422 handler.
    _mixture(http)
    for path in ("/mixtures/main%00", "/mixtures/main%00/versions", "/sources/web%00en", "/mixtures/main%00/current"):
        _assert_422_list(http.get(path))
    _assert_422_list(http.get("/runs", params={"source": "web\x00en"}))
    _assert_422_list(http.get("/runs", params={"status": "running\x00"}))
    for field in ("reason", "author"):
        for bad in ("\\ud800", "nul \\u0000 here"):
            body = '{"weights": {"web-en": 1}, "' + field + '": "' + bad + '"}'  # raw: json.dumps would escape
            detail = _assert_422_list(http.put("/mixtures/main", content=body, headers={**auth(), "Content-Type": "application/json"}))
            assert detail[0]["loc"] == ["body", field]
    _assert_422_list(
        http.post(
            "/sources",
            content='{"name": "s1", "language": "en", "domain": "\\ud800"}',
            headers={**auth(), "Content-Type": "application/json"},
        )
    )
    _assert_422_list(http.post("/sources", json={"name": "s2", "language": "en", "location": "/data\x00/x"}, headers=auth()))
    assert http.get("/mixtures/main").json()["version"] == 1  # nothing was written


@pytest.mark.parametrize("weights", [{"web-en": 1e308, "books-zh": 1e308}, {"web-en": 1.7e308, "books-zh": 0.2e308}])
def test_weights_whose_sum_overflows_are_a_422(http: httpx.Client, weights: dict) -> None:
    # Accepted before and served normalised to all 0.0 (the all-zero mixture the contract refuses).
    _mixture(http)
    detail = _assert_422_list(http.put("/mixtures/main", json={"weights": weights}, headers=auth()))
    assert "largest float" in detail[0]["msg"]
    # The same sum reached by a PATCH on top of the stored weights.
    assert http.put("/mixtures/main", json={"weights": {"web-en": 1.7e308, "books-zh": 1}}, headers=auth()).status_code == 200
    detail = _assert_422_list(http.patch("/mixtures/main", json={"weights": {"books-zh": 1.7e308}}, headers=auth()))
    assert "after the patch" in detail[0]["msg"]
    current = http.get("/mixtures/main").json()
    assert current["version"] == 2 and sum(current["weights"].values()) == pytest.approx(1.0)


def test_timestamps_are_utc_aware_on_every_database(http: httpx.Client) -> None:
    # SQLite returned naive timestamps on GET while the POST of the same row said UTC.
    created = _mixture(http).json()["created_at"]
    read = http.get("/mixtures/main").json()["created_at"]
    listed = http.get("/mixtures").json()[0]["updated_at"]
    source = http.get("/sources/web-en").json()["created_at"]
    for stamp in (created, read, listed, source):
        assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0, stamp
    assert datetime.fromisoformat(created) == datetime.fromisoformat(read)


def test_every_422_detail_is_a_list(http: httpx.Client) -> None:
    # Raised by the route with a sentence (unknown source), by validation (negative weight), by the
    # pipeline check: one shape.
    _mixture(http)
    for response in (
        http.put("/mixtures/main", json={"weights": {"nope": 1}}, headers=auth()),
        http.put("/mixtures/main", json={"weights": {"web-en": -1}}, headers=auth()),
        http.post("/sources", json={"name": "s3", "language": "en", "pipeline": {"no_such_stage": 1}}, headers=auth()),
    ):
        _assert_422_list(response)


def test_the_openapi_documents_every_status(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert {"400", "404", "412", "422"} <= paths["/mixtures/{name}"]["put"]["responses"].keys()
    assert {"400", "404", "412", "422"} <= paths["/mixtures/{name}"]["patch"]["responses"].keys()
    assert {"409", "422"} <= paths["/mixtures"]["post"]["responses"].keys()
    assert {"304", "400", "404"} <= paths["/mixtures/{name}/current"]["get"]["responses"].keys()
    assert {"404", "422"} <= paths["/runs/{run_id}"]["get"]["responses"].keys()
    assert {"404", "409"} <= {*paths["/sources/{name}"]["get"]["responses"], *paths["/sources"]["post"]["responses"]}
    version = paths["/mixtures/{name}/versions/{version}"]["get"]["parameters"]
    assert next(p for p in version if p["name"] == "version")["schema"]["maximum"] == INT64_MAX


def test_a_version_past_int4_is_served(pg_http: httpx.Client, postgres_url: str) -> None:
    # Versions are 64-bit columns (migration 0002): a mixture that reached 2**31 versions keeps working.
    import sqlalchemy as sa

    _mixture(pg_http)
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE mixtures SET current_version = :v"), {"v": 2**31 + 7})
        connection.execute(sa.text("UPDATE mixture_versions SET version = :v"), {"v": 2**31 + 7})
    engine.dispose()
    response = pg_http.put("/mixtures/main", json={"weights": {"web-en": 1}}, headers={**auth(), "If-Match": f'"{2**31 + 7}"'})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2**31 + 8 and response.headers["ETag"] == f'"{2**31 + 8}"'
    assert json.loads(pg_http.get(f"/mixtures/main/versions/{2**31 + 7}").text)["weights"] == {"books-zh": 0.25, "web-en": 0.75}
