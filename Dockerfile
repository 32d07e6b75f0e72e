# points-ledger API image. Runs `points-ledger serve` against POINTS_LEDGER_DATABASE_URL
# (a managed PostgreSQL); migrations run at start-up. Stateless: scale by adding replicas.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    POINTS_LEDGER_HOST=0.0.0.0 \
    POINTS_LEDGER_PORT=8000 \
    POINTS_LEDGER_LOG_JSON=true
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --home-dir /srv/points-ledger ledger
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/points-ledger
COPY --chown=ledger:ledger alembic.ini ./
COPY --chown=ledger:ledger migrations ./migrations
USER ledger
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["points-ledger"]
CMD ["serve", "--workers", "2"]
