from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import DeclarativeBase

from heurimentor.service_kit.db import make_metadata

# Steps, token counts and mixture versions grow with a run: 64-bit on PostgreSQL (SQLite integers
# are 64-bit already, and only ``INTEGER`` there is a rowid alias).
BigInt = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = make_metadata()  # the service kit's constraint naming convention
