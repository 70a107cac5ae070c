"""Bounded field types for the wire schemas of both services: a value that passes validation is one
the database can store, so bad input is a 422 naming the field, never a 500 from the driver.

Why each bound:
- integers: PostgreSQL ``integer`` is 32-bit and ``bigint`` 64-bit; steps, tokens and mixture
  versions are ``bigint`` columns (they grow with the run), ranks and ids ``integer`` ones.
- text: PostgreSQL cannot store NUL in ``text``/``varchar`` or ``json``, and a lone surrogate
  (``"\\ud800"`` in JSON) has no UTF-8 encoding, so neither can be stored or sent back.
- floats: NaN and Infinity are not JSON (PostgreSQL ``json`` refuses them) and order nothing;
  fields where a non-finite value means something (a diverged loss) say so and use their own type.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=-(2**63), le=INT64_MAX)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]

# A training step, a token count, a mixture version: 64-bit columns.
Step = NonNegativeInt64
TokenCount = NonNegativeInt64
Version = NonNegativeInt64
# A rank, a row id: 32-bit columns.
Rank = NonNegativeInt32
RowId = NonNegativeInt32

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """Refuse NUL and lone surrogates (valid Python ``str``, but no database or UTF-8 peer takes them)."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        raise ValueError(f"text holds {found.group()!r} at offset {found.start()}; NUL and lone surrogates are not allowed")
    return value


Text = Annotated[str, AfterValidator(storable_text)]


def bounded_text(max_length: int, *, min_length: int = 0) -> type[str]:
    """Text of at most ``max_length`` characters (the column's length), without NUL or lone surrogates."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(storable_text)]  # type: ignore[return-value]
