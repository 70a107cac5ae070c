"""Ray Data backend: the per-document stages (normalize, language id, quality rules) run as Ray Data
``map`` tasks over windows of record batches; dedup, tokenization and checkpointing stay in the
driver and see the batches in the same order as the local backend, so both backends produce the
same kept set and byte-identical shards.

``address=None`` starts a local Ray; production passes the cluster's address (``ray://…`` or
``auto``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import islice

from dmu_service.pipeline.config import PipelineConfig
from dmu_service.pipeline.process import DocumentProcessor, Processed
from dmu_service.pipeline.readers import Record


def _process_item(item: dict, *, config_json: str) -> dict:
    processor = DocumentProcessor(PipelineConfig.model_validate_json(config_json))
    records = [Record(*r) for r in json.loads(item["records"])]
    return {"processed": json.dumps([p.to_tuple() for p in processor.process(records)], ensure_ascii=False)}


class RayBackend:
    def __init__(self, *, address: str | None = None, num_cpus: int | None = None, window_batches: int = 16):
        import ray

        if not ray.is_initialized():
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        self.window_batches = window_batches

    def __call__(self, processor: DocumentProcessor, batches: Iterator[list[Record]]) -> Iterator[list[Processed]]:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        config_json = processor.cfg.model_dump_json()
        batches = iter(batches)
        while window := list(islice(batches, self.window_batches)):
            items = [{"records": json.dumps([(r.index, r.text, r.problem) for r in batch], ensure_ascii=False)} for batch in window]
            dataset = ray.data.from_items(items).map(_process_item, fn_kwargs={"config_json": config_json})
            for row in dataset.iter_rows():
                yield [Processed.from_tuple(t) for t in json.loads(row["processed"])]

    @staticmethod
    def shutdown() -> None:
        import ray

        ray.shutdown()
