# The Aquila2TrainingJob operator: `heurimentor operator run` (kopf). No torch in this image.
# Build from the repository root:  docker build -f docker/operator.Dockerfile -t heurimentor/operator .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY heurimentor/ heurimentor/
COPY operator/ operator/
COPY trainer/ trainer/
COPY dmu_service/ dmu_service/
COPY tsm_service/ tsm_service/
# The CRD ships with the operator: `heurimentor operator crd` prints it.
COPY charts/heurimentor/crds/ charts/heurimentor/crds/
# Editable: the CRD is read from charts/ next to the package (`heurimentor operator crd`).
RUN pip install -e ".[operator]" && useradd --uid 10001 --no-create-home operator
USER 10001
EXPOSE 8080 8081
ENTRYPOINT ["heurimentor"]
CMD ["operator", "run"]
