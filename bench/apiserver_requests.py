"""Counting a controller's apiserver requests from the apiserver's own metrics (a helper of the
operator benchmarks, not a benchmark): deltas of apiserver_request_total between two scrapes, on
the resources a job controller touches, minus the requests the benchmark itself sent."""

from __future__ import annotations

import re
from collections import Counter

WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
# (group, resource) a job controller reads or writes; subresources other than a job's status are
# other components' work (pods/binding: the scheduler; pods/status: KWOK). POSTs count answered
# 409s too (a create of a pod that exists).
CONTROLLER_RESOURCES = {
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "events"),
    ("heurimentor.io", "aquila2trainingjobs"),
    ("kubeflow.org", "pytorchjobs"),
}
_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class Requests:
    """apiserver_request_total by (verb, group, resource, subresource, code), and what the benchmark sent."""

    def __init__(self, plane):
        self.plane = plane
        self.own: Counter = Counter()  # (verb, group, resource, subresource) -> requests the benchmark made

    def count_own(self, verb: str, group: str, resource: str, n: int = 1) -> None:
        self.own[(verb, group, resource, "")] += n

    def scrape(self) -> Counter:
        counts: Counter = Counter()
        for line in self.plane.kubectl("get", "--raw", "/metrics").stdout.splitlines():
            m = _LINE.match(line)
            if m:
                labels = dict(_LABEL.findall(m["labels"]))
                key = (labels.get("verb"), labels.get("group", ""), labels.get("resource"), labels.get("subresource", ""))
                counts[(*key, labels.get("code", ""))] += int(float(m["value"]))
        return counts

    def of_controller(self, before: Counter, after: Counter, own: Counter) -> dict:
        """Reads and writes on job-controller resources between two scrapes, minus ``own`` (the
        benchmark's, all answered 2xx); writes also per kind ("PATCH aquila2trainingjobs/status")
        and, of those, the ones the apiserver refused, per kind and code ("POST pods 409")."""
        delta: Counter = Counter()
        refused: Counter = Counter()
        for (verb, group, resource, sub, code), value in after.items():
            if (group, resource) not in CONTROLLER_RESOURCES or sub not in ("", "status") or (sub and group == ""):
                continue
            n = value - before.get((verb, group, resource, sub, code), 0)
            delta[(verb, group, resource, sub)] += n
            if n and verb in WRITE_VERBS and not code.startswith("2"):
                refused[f"{verb} {resource}{'/' + sub if sub else ''} {code}"] += n
        for key, n in own.items():
            delta[key] -= n
        delta = Counter({k: n for k, n in delta.items() if n})
        by_kind = {f"{v} {r}{'/' + s if s else ''}": n for (v, _, r, s), n in sorted(delta.items()) if v in WRITE_VERBS}
        return {
            "writes": sum(n for (v, *_), n in delta.items() if v in WRITE_VERBS),
            "reads": sum(n for (v, *_), n in delta.items() if v not in WRITE_VERBS),
            "by_kind": by_kind,
            "refused": dict(sorted(refused.items())),
        }
