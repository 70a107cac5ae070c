# The training state monitor: `heurimentor tsm serve` (FastAPI). Run `heurimentor tsm migrate`
# first (an init container or a Helm hook): migrations run before the app, not in it.
# Build from the repository root:  docker build -f docker/tsm.Dockerfile -t heurimentor/tsm .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY heurimentor/ heurimentor/
COPY operator/ operator/
COPY trainer/ trainer/
COPY dmu_service/ dmu_service/
COPY tsm_service/ tsm_service/
RUN pip install ".[services]" && useradd --uid 10001 --create-home tsm
USER 10001
EXPOSE 8000
ENTRYPOINT ["heurimentor"]
CMD ["tsm", "serve", "--host", "0.0.0.0"]
