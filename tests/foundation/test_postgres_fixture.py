"""The PostgreSQL fixtures hand out a real server and isolated, empty databases."""

import psycopg
import pytest
import sqlalchemy as sa


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_postgres_url_is_a_fresh_empty_database(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        tables = conn.execute(sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).scalar_one()
        conn.execute(sa.text("CREATE TABLE mixture (id serial PRIMARY KEY, name text UNIQUE NOT NULL)"))
        conn.execute(sa.text("INSERT INTO mixture (name) VALUES ('web-zh')"))
    engine.dispose()
    assert version.startswith("15.")
    assert tables == 0


def test_databases_are_isolated_per_test(postgres_url):
    # The previous test created `mixture` in its own database; this one must not see it.
    with psycopg.connect(_plain(postgres_url)) as conn:
        assert conn.execute("SELECT to_regclass('public.mixture')").fetchone()[0] is None


def test_constraint_violation_is_reported_and_keeps_stored_rows(postgres_url):
    with psycopg.connect(_plain(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE shard (name text PRIMARY KEY)")
        conn.execute("INSERT INTO shard VALUES ('a')")
        with pytest.raises(psycopg.errors.UniqueViolation, match="shard_pkey"):
            conn.execute("INSERT INTO shard VALUES ('a')")
        assert conn.execute("SELECT count(*) FROM shard").fetchone()[0] == 1


def test_pg_server_creates_named_databases(pg_server):
    url = pg_server.create_database("foundation_named")
    try:
        with psycopg.connect(_plain(url)) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "foundation_named"
        with pytest.raises(ValueError, match="must match"):
            pg_server.create_database("bad; DROP DATABASE postgres")
    finally:
        pg_server.drop_database("foundation_named")
