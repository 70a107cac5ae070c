# The data management unit: `heurimentor dmu serve` (FastAPI). Run `heurimentor dmu migrate` first
# (an init container or a Helm hook): migrations run before the app, not in it.
# Build from the repository root:  docker build -f docker/dmu.Dockerfile -t heurimentor/dmu .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY heurimentor/ heurimentor/
COPY operator/ operator/
COPY trainer/ trainer/
COPY dmu_service/ dmu_service/
COPY tsm_service/ tsm_service/
RUN pip install ".[dmu]" && useradd --uid 10001 --create-home dmu
USER 10001
EXPOSE 8000
ENTRYPOINT ["heurimentor"]
CMD ["dmu", "serve", "--host", "0.0.0.0"]
