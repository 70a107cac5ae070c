"""What crosses a process boundary, in one dependency-light package (pydantic, numpy, httpx only).

The operator, the trainer, the DMU and the TSM run in different images and processes; each imports
the contracts it writes or reads from here and never imports another deployable (the import-linter
contracts in ``pyproject.toml`` enforce it):

    shards       the tokenized shard format (DMU writes, trainer reads)
    mixtures     the mixture REST schemas and their client (DMU serves, trainer and TSM call)
    metrics      the metric batch the trainer posts to the TSM
    jobs         the job name pattern shared by the operator's job id, the trainer and the TSM
    worker_env   the environment the operator gives a worker pod (PET_* and HEURIMENTOR_*)
    progress     the progress annotation trainer rank 0 writes on its pod and the operator reads
    presets      the model preset names (the trainer's table, the operator's check, the CRD's enum)
    batch        the split of the global batch over device pools

Submodules are imported by name (``from heurimentor.contracts.shards import ...``); this file
imports nothing, so ``import heurimentor.contracts`` costs nothing.
"""
