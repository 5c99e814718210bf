"""Fixtures shared by every tier of tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session; dropped afterwards.

    Yields a SQLAlchemy URL (psycopg 3 driver).
    """
    require_postgres()
    import psycopg

    name = f"trunkline_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
