"""``kind: ort-int8``: the reference ONNX quantized on the host (static QDQ) and run on onnxruntime CPU."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from qc.cache import stable_hash
from qc.config import OrtInt8Target
from qc.data.images import load_image_set
from qc.errors import ConfigError
from qc.runners.ort import OrtRunner
from qc.targets.onnx import Onnx

if TYPE_CHECKING:
    from qc.config import ImageData
    from qc.pipeline import ModelStages

log = logging.getLogger(__name__)

MODEL_FILE = "model.int8.onnx"


class OrtInt8(Onnx):
    """:class:`qc.targets.base.Target` that quantizes the reference with the entry's settings (cached on disk)."""

    kind: ClassVar[str] = "ort-int8"
    requires: ClassVar[tuple[str, ...]] = ("calibration",)

    def __init__(self, stages: ModelStages) -> None:
        super().__init__(stages)
        if stages.spec.calibration is None:
            raise ConfigError(f"{stages.spec.name}: target kind 'ort-int8' needs a 'calibration' image set.")
        self.calibration: ImageData = stages.spec.calibration
        self.quantize_notes: list[str] = []
        """What the quantization did on the way (pre-processing, opset upgrade, bias bit width): the run's notes."""

    def _quant(self) -> OrtInt8Target:
        settings = self.spec.target
        if not isinstance(settings, OrtInt8Target):
            raise ConfigError(f"{self.spec.name}: target kind {settings.kind!r} is not {self.kind!r}.")
        return settings

    def key(self) -> str:
        from qc.pipeline import inputs_key, ort_version

        calib = load_image_set(self.calibration)
        return stable_hash(
            "ort-int8",
            self.spec.reference,
            self._quant(),
            inputs_key(self.spec),
            calib.fingerprint(),
            ort_version(),
        )

    def runner(self) -> OrtRunner:
        if self._runner is not None:
            return self._runner
        from qc.pipeline import count_feeds, iter_feeds
        from qc.runners.quantize import quantize_int8

        def build(folder: Path) -> tuple[Path, dict[str, object]]:
            path = folder / MODEL_FILE
            name, size = self.stages.io()
            calib = load_image_set(self.calibration)
            feeds = (f for _, f, _ in iter_feeds(self.spec, calib, name, size))
            notes: list[str] = []
            total = count_feeds(self.spec, calib, name, size)
            used = quantize_int8(
                self.spec.reference, self._quant(), feeds, path, self.spec.name, notes, calibration_total=total
            )
            log.info("%s: quantized with %d calibration images", self.spec.name, used)
            self.quantize_notes = notes
            return path, {"model": MODEL_FILE, "calibration_images": used, "notes": notes}

        def load(data: object, folder: Path) -> Path | None:
            path = folder / MODEL_FILE
            if isinstance(data, dict):
                self.quantize_notes = [str(n) for n in data.get("notes", [])]
            return path if path.is_file() else None

        path = self.stages.ctx.cache.cached("quantized", self.key(), build, load)
        self._runner = OrtRunner(f"{self.spec.name} (target)", path)
        return self._runner

    def requantize(self) -> OrtInt8Target:
        return self._quant()

    def comparison_note(self) -> str:
        note = super().comparison_note()
        self.runner()  # quantized or loaded from the cache: its notes are known
        return " ".join([note, *(f"Quantization: {n}." for n in self.quantize_notes)])
