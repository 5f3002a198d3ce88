"""One `/metrics` for `--workers N`: the workers' expositions merged into one (sans-IO).

Samples with the same name and labels are added up (requests, bytes, sessions, CPU
seconds, histogram buckets), except start times (`*_created`, `process_start_time_seconds`:
the earliest) and per-process limits or facts every worker shares (the largest).
`burrow_edge_worker_requests{worker}` tells how the visitor requests spread over the workers.
"""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

EARLIEST = ("process_start_time_seconds",)
LARGEST = ("process_max_fds", "burrow_edge_certificate_expiry_days")
REQUESTS = "burrow_edge_requests_total"


def _combine(name: str, old: float, new: float) -> float:
    if name.endswith("_created") or name in EARLIEST:
        return min(old, new)
    if name in LARGEST:
        return max(old, new)
    return old + new


def merge(texts: dict[int, str]) -> list[Metric]:
    """Worker index → its exposition text, in; the merged metric families out."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    per_worker = Metric("burrow_edge_worker_requests", "Visitor requests each worker answered.", "counter")
    for worker, text in sorted(texts.items()):
        answered = 0.0
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = _combine(sample.name, samples[key], sample.value) if key in samples else sample.value
                if sample.name == REQUESTS:
                    answered += sample.value
        per_worker.add_sample("burrow_edge_worker_requests_total", {"worker": str(worker)}, answered)
    for name, family in families.items():
        family.samples = [Sample(sample, dict(labels), value) for (sample, labels), value in values[name].items()]
    return [*families.values(), per_worker]
