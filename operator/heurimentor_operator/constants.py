"""Names shared by the operator, its chart and its tests: API group, labels, annotations."""

from __future__ import annotations

GROUP = "heurimentor.io"
VERSION = "v1alpha1"
PLURAL = "aquila2trainingjobs"
KIND = "Aquila2TrainingJob"
SHORT_NAME = "a2j"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels on every object the operator makes. Label values must stay <= 63 characters, which is why
# the CRD caps job names at 40 (pod names append "-<pool>-<index>").
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "heurimentor-operator"
LABEL_JOB = f"{GROUP}/job"
LABEL_POOL = f"{GROUP}/pool"
LABEL_INDEX = f"{GROUP}/replica-index"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_RDZV_HOST = f"{GROUP}/rendezvous-host"
# Kueue admits workloads by this label; copied from spec.scheduling.queueName.
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"

# Set by the TSM (or a person) on the job: restart every worker from the checkpoint of this step.
ANNOTATION_ROLLBACK = f"{GROUP}/rollback-to-step"
# Optional, read with a new rollback-to-step: "FROM-TO", the steps whose data the restarted run skips
# (the TSM recommendation's skip_from_step..skip_to_step, PaLM's recipe).
ANNOTATION_ROLLBACK_SKIP = f"{GROUP}/rollback-skip-steps"
# Optional, read with a new rollback-to-step: who asked (e.g. "tsm/17"); a new value asks again even
# for the same step and range (the TSM can recommend the same rollback twice).
ANNOTATION_ROLLBACK_ID = f"{GROUP}/rollback-id"
# On pods: hash of the spec fields that shape a pod; a change restarts the job with the new template.
ANNOTATION_TEMPLATE_HASH = f"{GROUP}/template-hash"

CONFIG_MOUNT_DIR = "/etc/heurimentor"
CONFIG_FILE = "train.yaml"
RDZV_PORT = 29400
DEFAULT_IMAGE = "ghcr.io/heurimentor/trainer:0.1.0"
# Trainer Prometheus endpoint (local rank 0 serves every rank of the pod); spec.metrics.prometheusPort: 0 disables.
METRICS_PORT = 9400
# prometheus_client multiprocess directory: an emptyDir per pod, shared by that pod's ranks.
PROMETHEUS_DIR = "/var/run/heurimentor/prometheus"
WORKER_CONTAINER = "trainer"

FINISHED_PHASES = ("Succeeded", "Failed")
