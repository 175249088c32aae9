"""The host-simulation stage of the pipeline: build (cached), split the device's error (cached), write the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qc import jsonio, progress
from qc.errors import ConfigError
from qc.report.paths import model_dir
from qc.snpe.hostsim.plan import HostSimResult
from qc.snpe.hostsim.split import ErrorSplit, HostSimRunner, split_error, write_error_split

if TYPE_CHECKING:
    from qc.pipeline import ModelStages

# ----------------------------------------------------------------------------------------------------------------
# The stage


@dataclass
class HostSimStage:
    hostsim: HostSimResult
    split: ErrorSplit
    files: list[Path] = field(default_factory=list)


def host_simulation_stage(
    stages: ModelStages, *, quantize_weights: bool = True, margin_db: float = 6.0
) -> HostSimStage:
    """Build (cached) the host simulation of an ``snpe`` entry's DLC and split the device's error (cached);
    writes ``hostsim.json``, ``error_split.csv`` and ``error_split.json`` into the model's report folder."""
    from qc.cache import atomic_write_text, stable_hash
    from qc.config import SnpeTarget
    from qc.data.images import load_image_set
    from qc.pipeline import inputs_key, iter_feeds, ort_version
    from qc.snpe.hostsim import build_host_simulation
    from qc.snpe.runner import SnpeRunner

    spec = stages.spec
    if not isinstance(spec.target, SnpeTarget):
        raise ConfigError(
            f"{spec.name}: the host simulation reproduces a DLC's encodings; target kind is "
            f"{spec.target.kind!r}, expected 'snpe'."
        )
    target = stages.target()
    assert isinstance(target, SnpeRunner)
    cache = stages.ctx.cache
    name, size = stages.io()
    calib = load_image_set(spec.calibration) if spec.calibration is not None else None
    key = stable_hash(
        "hostsim",
        spec.reference,
        spec.target.dlc,
        inputs_key(spec),
        calib.fingerprint() if calib is not None else None,
        quantize_weights,
        ort_version(),
    )

    def build(folder: Path) -> tuple[HostSimResult, dict[str, Any]]:
        # progress: calibration image n/N (onnxruntime asks for the next once it has run the previous one)
        with progress.task(spec.name, "hostsim build", len(calib) if calib is not None else None) as bar:
            feeds = bar.each(f for _, f, _ in iter_feeds(spec, calib, name, size)) if calib is not None else None
            built = build_host_simulation(
                spec.reference,
                target.dlc_info(),
                target.tensor_map(),
                feeds,
                folder / "hostsim.onnx",
                spec.name,
                quantize_weights=quantize_weights,
            )
        return built, built.to_json()

    def load(data: Any, folder: Path) -> HostSimResult | None:
        if not (folder / "hostsim.onnx").is_file():
            return None
        loaded = HostSimResult.from_json(data)
        loaded.model = folder / "hostsim.onnx"
        return loaded

    built = cache.cached("hostsim", key, build, load)
    split_key = stable_hash(
        "error-split",
        key,
        stages.target_key(),
        inputs_key(spec),
        stages.eval_images().fingerprint(),
        margin_db,
    )

    def build_split(_folder: Path) -> tuple[ErrorSplit, dict[str, Any]]:
        sim = HostSimRunner(f"{spec.name} (host simulation)", built.model)
        feeds2 = ((i, f) for i, f, _ in iter_feeds(spec, stages.eval_images(), name, size))
        with target.session(), progress.task(spec.name, "hostsim split", len(stages.eval_images())) as bar:
            split = split_error(
                spec.name, stages.reference, sim, target, target.tensor_map(), feeds2, margin_db=margin_db, bar=bar
            )
        return split, split.to_json()

    split = cache.cached("error-split", split_key, build_split, lambda data, _folder: ErrorSplit.from_json(data))
    report = model_dir(stages.ctx.report_dir, spec.name)
    files = write_error_split(split, report)
    hostsim_json = report / "hostsim.json"
    atomic_write_text(hostsim_json, jsonio.dumps(built.to_json(), indent=1, default=str))
    files.append(hostsim_json)
    return HostSimStage(built, split, files)
