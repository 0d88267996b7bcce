# MindProject service image.
#   docker build -t mindproject .
#   docker run -p 5000:5000 -e MINDPROJECT_SECRET_KEY=... mindproject
# Build stage: a virtual environment with the package and its dependencies.
# Runtime stage: the same slim base, the venv copied over, no build tools, numeric non-root user.
# PYTHON_IMAGE lets CI pull the same image from a mirror (e.g. public.ecr.aws/docker/library/...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# checkov:skip=CKV_DOCKER_7:The base is ARG PYTHON_IMAGE, pinned to python:3.11-slim-bookworm above; CI only swaps in a registry mirror of the same tag.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
# Dependencies first, in a layer of their own that is rebuilt only when pyproject.toml changes
# (installed through a placeholder package, then the placeholder is removed).
RUN mkdir -p src/mindproject \
    && touch src/mindproject/__init__.py \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip uninstall --yes mindproject \
    && rm -rf src build
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/mindproject --version


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="mindproject" \
      org.opencontainers.image.description="Telemetry upload service for IoT fleets" \
      org.opencontainers.image.licenses="MIT"

# Listens on all interfaces inside the container; storage defaults to a local folder (mount a
# volume there) and is s3://bucket/prefix on AWS.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MINDPROJECT_HOST=0.0.0.0 \
    MINDPROJECT_PORT=5000 \
    MINDPROJECT_STORAGE=file:///data

RUN groupadd --gid 10001 mindproject \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mindproject \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data
EXPOSE 5000

# Liveness only (/healthz), the same probe the ECS task definition uses; /readyz is for traffic.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MINDPROJECT_PORT', '5000'), timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["mindproject"]
CMD ["serve"]
