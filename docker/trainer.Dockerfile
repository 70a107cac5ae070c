# The ATE worker: torchrun + heurimentor_trainer.train, started by the operator in every worker pod.
# CUDA wheels of torch come from PyPI (the cu12 runtime is bundled in the wheels).
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t heurimentor/trainer .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY heurimentor/ heurimentor/
COPY operator/ operator/
COPY trainer/ trainer/
COPY dmu_service/ dmu_service/
COPY tsm_service/ tsm_service/
RUN pip install ".[trainer]" && useradd --uid 10001 --create-home trainer
USER 10001
# torchrun's c10d rendezvous store (pod 0 of the first pool hosts it).
EXPOSE 29400
# The operator sets the command (torchrun ... -m heurimentor_trainer.train --config /etc/heurimentor/train.yaml).
CMD ["python", "-m", "heurimentor_trainer.train", "--help"]
