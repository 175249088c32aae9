"""Speed of the segmentation and classification task metrics, per image.

Run: ``pytest tests/perf/test_task_eval_perf.py -p no:cacheprovider --benchmark-only``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from qc.data.preprocess import Transform
from qc.eval.classification import ClassificationAccumulator
from qc.eval.segmentation import SegDecode, SegmentationAccumulator, decode_mask

pytestmark = pytest.mark.perf

N_SEG = 20
N_CLS = 1000


def _blob_scores(rng: np.random.Generator, channels: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in range(channels)])
    return (base + 0.1 * rng.standard_normal(base.shape)).astype(np.float32)[None]


@pytest.mark.parametrize(("channels", "activation"), [(1, "sigmoid"), (21, "softmax")])
def test_segmentation_metrics_per_image(benchmark: BenchmarkFixture, channels: int, activation: str) -> None:
    """Decode both sides of a 320x320 output back to a 500x375 photo and accumulate against ground truth."""
    rng = np.random.default_rng(0)
    ref = _blob_scores(rng, channels, 320)
    tgt = ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32)
    t = Transform(320 / 500, 320 / 500, 0.0, 40.0, 500, 375)  # letterboxed
    spec = SegDecode(activation=activation)  # type: ignore[arg-type]
    gt, _ = decode_mask(ref, spec, t, (320, 320))
    k = max(channels, 2)

    def run() -> float:
        acc = SegmentationAccumulator(num_classes=k)
        for i in range(N_SEG):
            a, _ = decode_mask(ref, spec, t, (320, 320))
            b, _ = decode_mask(tgt, spec, t, (320, 320))
            acc.add(str(i), a, b, gt)
        return acc.result().agreement_miou

    agreement = cast(Any, benchmark).pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert 0.5 < agreement < 1.0


def test_classification_metrics_per_image(benchmark: BenchmarkFixture) -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((16, 1, 1000)).astype(np.float32) * 3
    noisy = logits + 0.3 * rng.standard_normal(logits.shape).astype(np.float32)

    def run() -> float:
        acc = ClassificationAccumulator(activation="softmax")
        for i in range(N_CLS):
            acc.add(str(i), logits[i % 16], noisy[i % 16], label=i % 1000)
        return acc.result().top1_agreement

    agreement = cast(Any, benchmark).pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert 0.5 < agreement <= 1.0
