# dr-orchestrator image: `drctl` as the entrypoint; the same image runs the worker (default) and the sandbox.
#
#   docker build -t dr-orchestrator:dev .
#   docker run --rm dr-orchestrator:dev --help
#
# Two stages: `build` installs the package (with the `sandbox` extra) from uv.lock into a virtualenv, `runtime` copies only that
# virtualenv onto a clean base, so pip, wheel caches and the source tree stay out of the final image.

FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# uv, at the version the lock names and checked against its hashes, installs everything else from uv.lock.
COPY tools/bootstrap.txt /tmp/bootstrap.txt
RUN pip install --require-hashes --no-deps -r /tmp/bootstrap.txt
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# Dependencies first, exactly as locked (without the project), so editing the code does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --extra sandbox --no-install-project

# Then the project itself, not editable: the runtime stage gets no source tree (README.md is optional).
COPY README.md* ./
COPY contracts/ contracts/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY plans/ plans/
COPY sandbox/ sandbox/
COPY drctl/ drctl/
RUN uv sync --locked --no-dev --extra sandbox --no-editable \
    && drctl --help > /dev/null


FROM python:3.11.13-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="dr-orchestrator" \
      org.opencontainers.image.description="Disaster-recovery orchestrator for AWS application estates, on Temporal"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 drorch \
    && useradd --system --uid 10001 --gid drorch --home-dir /home/drorch --create-home --shell /usr/sbin/nologin drorch

COPY --from=build /opt/venv /opt/venv

# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /home/drorch

# Only `drctl sandbox serve --host 0.0.0.0 --port 4566` listens; the worker makes outbound connections only.
EXPOSE 4566

ENTRYPOINT ["drctl"]
CMD ["worker"]
