# city-gateway: a slim, non-root image running `city-gateway serve`.
#
#   docker build -t daarion/city-gateway .
#   docker run -e DATABASE_URL=... -e REDIS_URL=... -e CITY_JWT_SECRET=... -p 8080:8080 daarion/city-gateway
#
# The project is installed in editable mode at /app: `migrations/` is found next to
# the `gateway` package, as in a source checkout. docker-compose.yml runs the same
# image for `city-gateway migrate` and to render Synapse's config and registration.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first (a layer that survives code changes), then the code.
COPY pyproject.toml README.md ./
RUN mkdir gateway bridge \
 && pip install --upgrade pip setuptools wheel \
 && pip install . \
 && pip uninstall --yes city-gateway \
 && rmdir gateway bridge
COPY gateway ./gateway
COPY bridge ./bridge
COPY migrations ./migrations
RUN pip install --no-deps -e . && python -m compileall -q /app/gateway /app/bridge

FROM python:3.11-slim
# CITY_WORKERS: worker processes in this container (`serve --workers`); one, since
# containers scale by replicas. "auto" runs one per CPU the container may use
# (its --cpus quota, not the host's core count). docs/operations.md, "Workers".
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    CITY_WORKERS=1
# An unprivileged user; /var/lib/city is where one-shot jobs may write (compose mounts
# a named volume there, which inherits this ownership).
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin city \
 && install -d -o city -g city /var/lib/city
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER city
EXPOSE 8080
# SIGTERM: uvicorn stops accepting, closes WebSockets with 1001 and finishes in-flight
# requests (up to 10 s); give it that long before a SIGKILL (docker stop -t 20). With
# CITY_WORKERS > 1 the supervisor (PID 1 here) forwards it to every worker and waits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["city-gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
