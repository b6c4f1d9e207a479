# Delta worker image: `docker build -t delta .` then `docker run -e DELTA_BOOTSTRAP_SERVERS=kafka:9092 delta`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY delta ./delta
RUN pip install --no-cache-dir --upgrade pip && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 delta && mkdir -p /var/lib/delta && chown delta /var/lib/delta
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER delta
WORKDIR /home/delta
ENV DELTA_HOST=0.0.0.0 DELTA_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('DELTA_PORT', '8080'), timeout=3)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["delta"]
CMD ["run"]
