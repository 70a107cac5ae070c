"""Facts of the images (docker/) that another process relies on."""

from __future__ import annotations

# The trainer image's group (docker/trainer.Dockerfile). Worker pods take it as fsGroup: a freshly
# provisioned checkpoint volume (root-owned) is then writable by the trainer's non-root user.
TRAINER_GID = 10001
