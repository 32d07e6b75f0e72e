"""Keyset-pagination cursors: an opaque token for "after (or before) row id N" of one listing.

A cursor is base64url of `<tag>:<id>`; the tag names the listing, so a history cursor is
refused by the referrals listing instead of silently paging something else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from app import errors

NEWEST = 2**63 - 1  # the largest bigint id: "before NEWEST" is the first page, newest first


Row = TypeVar("Row")


def _row_id(row: Any) -> int:
    """A row's id: a database record's `id` column, or a model's `id` attribute."""
    try:
        return int(row["id"])
    except TypeError:
        return int(row.id)


@dataclass(frozen=True)
class Cursor:
    tag: str

    def encode(self, row_id: int) -> str:
        return base64.urlsafe_b64encode(f"{self.tag}:{row_id}".encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> int:
        """The row id in `cursor`; 400 invalid_cursor for anything this listing did not issue."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            tag, _, value = raw.partition(":")
            row_id = int(value)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise errors.InvalidCursor("use next_cursor from a previous page") from exc
        if tag != self.tag or not 0 < row_id <= NEWEST:
            raise errors.InvalidCursor("use next_cursor from a previous page")
        return row_id

    def page(self, rows: Sequence[Row], limit: int) -> tuple[list[Row], str | None]:
        """A page from `limit + 1` rows fetched in listing order: the first `limit`, and the
        cursor after the last of them when the extra row shows there is more (so the last
        page is never an empty one)."""
        items = list(rows[:limit])
        return items, self.encode(_row_id(items[-1])) if len(rows) > limit else None
