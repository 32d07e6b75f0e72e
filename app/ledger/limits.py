"""Bounds on amounts accepted by the API.

Points and money are integers. The API accepts at most 2^53 - 1 (the largest integer every JSON
client can represent exactly); sums beyond PostgreSQL's bigint are refused by the database.
"""

from typing import Annotated

from pydantic import Field

MAX_AMOUNT = 2**53 - 1

PositivePoints = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]
SignedPoints = Annotated[int, Field(strict=True, ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
