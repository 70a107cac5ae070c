"""TorchX component: launch the trainer the way the operator's pods do (torchrun, elastic, c10d).

    torchx run -s local_cwd trainer/heurimentor_trainer/torchx_component.py:train --config deploy/train-debug.yaml --j 1x2

TorchX is the optional extra ``heurimentor[torchx]`` and we pin ``torchx-nightly``: torchx 0.7.0
pins ``urllib3<1.27``, which fights the Kubernetes client, and a plain resolve silently falls
back to torchx 0.3.0.
"""

# No `from __future__ import annotations`: torchx reads the real annotation objects to parse CLI flags.
from typing import Dict, List, Optional

import torchx.specs as specs
from torchx.components import dist


def train(
    *script_args: str,
    config: str = "/etc/heurimentor/train.yaml",
    image: str = "heurimentor-trainer:latest",
    name: str = "heurimentor/train",
    j: str = "1:2x1",
    cpu: int = 4,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    max_restarts: int = 3,
    rdzv_port: int = 29500,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Elastic Aquila2 training: ``torchrun --nnodes MIN:MAX … -m heurimentor_trainer.train --config CONFIG``.

    Args:
        script_args: extra trainer flags, e.g. ``--set steps=100``
        config: the trainer's YAML config inside the image (or the working dir for local_cwd)
        image: container image holding the heurimentor package
        name: job name, ``{experiment}/{run}``
        j: ``[{min_nnodes}:]{max_nnodes}x{nproc_per_node}``; min < max makes the job elastic
        cpu: CPUs per node
        gpu: GPUs per node
        memMB: memory per node in MB
        h: a named TorchX resource (overrides cpu/gpu/memMB)
        env: extra environment variables
        max_restarts: worker-group restarts torchrun allows before the job fails
        rdzv_port: port of the c10d rendezvous store on the first node
        mounts: volume mounts, e.g. ``type=bind,src=/data,dst=/data``
    """
    # A restarted worker group must not reuse the rendezvous TCP store (pytorch/pytorch#135712).
    env = {
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "OMP_NUM_THREADS": str(max(1, cpu // max(1, int(j.rsplit("x", 1)[-1])))),
        **(env or {}),
    }
    app = dist.torchrun(
        "--config",
        config,
        *script_args,
        m="heurimentor_trainer.train",
        image=image,
        name=name,
        j=j,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        h=h,
        env=env,
        rdzv_backend="c10d",
        rdzv_port=rdzv_port,
        mounts=mounts,
    )
    role = app.roles[0]
    # torchx's torchrun builder has no restart knob; the operator's pods pass --max-restarts too.
    role.args = [arg.replace("torchrun ", f"torchrun --max_restarts {max_restarts} ", 1) for arg in role.args]
    return app
