"""Running the alembic revisions from code (CLI, start-up, tests)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

import app


def migrations_dir() -> Path:
    """`migrations/` beside the package (source checkout) or in the working directory (image)."""
    for candidate in (Path(app.__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "migrations" / "env.py").exists():
            return candidate / "migrations"
    raise FileNotFoundError("cannot find the migrations/ directory")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """`alembic upgrade`; safe to call from inside a running event loop (runs in a thread)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(url), revision)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="alembic-upgrade")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
