"""settings.monitoring: off (bench/monitoring's baseline) the store records none of Borealis's own samples."""

from __future__ import annotations

from pathlib import Path

from borealis.config import load_settings
from borealis.metrics import MetricStore


def test_the_setting() -> None:
    assert load_settings({}, env={"BOREALIS_DATA_DIR": "/x"}).monitoring is True
    assert load_settings({}, env={"BOREALIS_DATA_DIR": "/x", "BOREALIS_MONITORING": "off"}).monitoring is False


def test_a_store_not_recording_keeps_custom_metrics_only(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    store.recording = False
    store.put("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "i"}, 5.0, "Percent", 1000.0)
    store.put_statistics("MyApp", "Jobs", {}, "Count", 1000.0, 1, 2.0, 2.0, 2.0)  # PutMetricData still writes
    assert [s.namespace for s in store.series()] == ["MyApp"]
    store.recording = True
    store.put("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "i"}, 5.0, "Percent", 1000.0)
    assert len(store.series()) == 2
    store.close()
