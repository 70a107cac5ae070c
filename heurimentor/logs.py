"""Structured (one JSON object per line) logging shared by every deployable."""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
# kopf's per-object adapter puts its whole OperatorSettings (~1.9 KB as text) and a posting flag on
# every record; only the object reference is worth a log line, as "namespace/name".
_KOPF_INTERNALS = {"settings", "k8s_skip", "k8s_ref"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED | _KOPF_INTERNALS and not k.startswith("_")})
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            entry["object"] = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else ref["name"]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_format: bool = True) -> None:
    """Log to stderr; JSON lines by default, plain text for humans with ``json_format=False``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
