"""Reads a Prometheus /metrics page with prometheus_client's own text-format parser.

Usage: scrape_metrics.py URL. Prints one sample per line, `name{label=value,...} value`,
labels sorted, so a test can find the counters it expects.
"""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    assert response.status == 200, response.status
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("text/plain"), content_type
    text = response.read().decode("utf-8")

for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print(f"{sample.name}{{{labels}}} {sample.value}")
