"""The demo assets (real YOLOv3-tiny, real photos) for integration tests: built once, from the cache."""

from __future__ import annotations

import pytest

from qc.assets import AssetBuilder, AssetPaths, TaskAssetPaths
from qc.errors import DataError


@pytest.fixture(scope="session")
def demo_assets() -> AssetPaths:
    """Builds (or verifies) the asset cache; fails, never skips, when it cannot be had."""
    try:
        return AssetBuilder().build()
    except DataError as exc:
        pytest.fail(f"demo assets are unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def task_assets(demo_assets: AssetPaths) -> TaskAssetPaths:
    """The segmentation and classification demo assets (built with the detector's by AssetBuilder.build)."""
    return TaskAssetPaths(demo_assets.root)
