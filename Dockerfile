# dr-orchestrator image: `drctl` as the entrypoint; the same image runs the worker (default) and the sandbox.
#
#   docker build -t dr-orchestrator:dev .
#   docker run --rm dr-orchestrator:dev --help
#
# Two stages: `build` installs the package (with the `sandbox` extra) into a virtualenv, `runtime` copies only that
# virtualenv onto a clean base, so pip, wheel caches and the source tree stay out of the final image.

FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, read straight from pyproject.toml, so editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['sandbox']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (README.md is optional: the wildcard tolerates its absence).
COPY README.md* ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY plans/ plans/
COPY sandbox/ sandbox/
COPY drctl/ drctl/
RUN pip install ".[sandbox]" \
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
