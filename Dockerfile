# syntax=docker/dockerfile:1
# trunkline's production image: `trunkline serve` as a non-root user, with git (workspace
# mirrors, worktrees, pushes) and bubblewrap (the agents' command sandbox). See docs/deploy.md.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trunkline ./trunkline
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 trunkline \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin trunkline \
    && mkdir /data && chown trunkline:trunkline /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV TRUNKLINE_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER trunkline
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# /healthz answers while the process serves; /readyz also checks the database schema.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# On 0.0.0.0 the dashboard and /metrics are mounted only when TRUNKLINE_DASHBOARD_TOKEN is set.
CMD ["trunkline", "serve", "--host", "0.0.0.0", "--port", "8000"]
