"""The diagnosis stage: ``diagnose(stages)`` ties local error, ranges, origins, sensitivity and advice together.

Cached under ``diagnosis/<key>`` in the stage cache (key: the comparison's key, the diagnose settings, thresholds,
task and gates, and qc's own source), so a warm re-run quantizes and runs nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qc import progress
from qc.cache import stable_hash
from qc.diagnose.advice import (
    ACCURACY_GATES,
    ADVICE_GATES,
    OUTPUT_GATES,
    Advice,
    GateVerdict,
    Trial,
    Verification,
    advice_message,
    goal_gates,
    greedy_keep,
    int16_encodings,
    score_of,
    snpe_overrides,
    summarize,
    verdicts_for,
    yaml_entry,
)
from qc.diagnose.local import LocalResult, build_local_model, stream_local
from qc.diagnose.origins import GraphInfo, Origin, add_sensitive, find_origins, pattern_of
from qc.diagnose.qdq import activation_quantizers
from qc.diagnose.ranges import RangeEvidence, RangeObserver
from qc.diagnose.sensitivity import Candidate, SensitivityResult, measure
from qc.diagnose.variants import Variant, Variants
from qc.errors import ConfigError
from qc.pipeline import ModelStages, iter_feeds, ort_version
from qc.runners.ort import OrtRunner, describe
from qc.tasks.base import is_labelled

log = logging.getLogger(__name__)


@dataclass
class Diagnosis:
    """Everything ``diagnose`` found for one models.yaml entry."""

    model: str
    target_kind: str
    images: int
    local: LocalResult
    ranges: dict[str, RangeEvidence]
    observed: dict[str, tuple[float, float, float]]
    graph: GraphInfo
    accumulated: dict[str, tuple[float, float]]
    origins: list[Origin]
    patterns: dict[str, str]
    failing_gates: list[str]
    sensitivity: SensitivityResult | None = None
    advice: Advice | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target_kind": self.target_kind,
            "images": self.images,
            "local": self.local.to_json(),
            "ranges": {k: v.to_json() for k, v in self.ranges.items()},
            "observed": {k: list(v) for k, v in self.observed.items()},
            "graph": self.graph.to_json(),
            "accumulated": {k: list(v) for k, v in self.accumulated.items()},
            "origins": [o.to_json() for o in self.origins],
            "patterns": self.patterns,
            "failing_gates": self.failing_gates,
            "sensitivity": self.sensitivity.to_json() if self.sensitivity is not None else None,
            "advice": self.advice.to_json() if self.advice is not None else None,
            "notes": self.notes,
            "timings": self.timings,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Diagnosis:
        sens, adv = data.get("sensitivity"), data.get("advice")
        return cls(
            model=data["model"],
            target_kind=data["target_kind"],
            images=data["images"],
            local=LocalResult.from_json(data["local"]),
            ranges={k: RangeEvidence.from_json(v) for k, v in data["ranges"].items()},
            observed={k: (float(v[0]), float(v[1]), float(v[2])) for k, v in data["observed"].items()},
            graph=GraphInfo.from_json(data["graph"]),
            accumulated={k: (float(v[0]), float(v[1])) for k, v in data["accumulated"].items()},
            origins=[Origin.from_json(o) for o in data["origins"]],
            patterns=dict(data["patterns"]),
            failing_gates=list(data["failing_gates"]),
            sensitivity=SensitivityResult.from_json(sens) if sens is not None else None,
            advice=Advice.from_json(adv) if adv is not None else None,
            notes=list(data["notes"]),
            timings=dict(data["timings"]),
        )


def diagnosis_key(stages: ModelStages) -> str:
    spec = stages.spec
    return stable_hash(
        "diagnosis",
        stages.comparison_key(),
        spec.diagnose,
        spec.thresholds,
        spec.task,
        list(spec.gates) if spec.gates is not None else None,
    )


def diagnose(stages: ModelStages) -> Diagnosis:
    """Local error, range evidence, origins, sensitivity ranking and verified advice of one entry; cached."""
    cache = stages.ctx.cache
    key = diagnosis_key(stages)

    def build(_folder: Path) -> tuple[Diagnosis, dict[str, Any]]:
        result = _diagnose(stages)
        return result, result.to_json()

    return cache.cached("diagnosis", key, build, lambda data, _folder: Diagnosis.from_json(data))


def local_and_ranges(
    stages: ModelStages,
) -> tuple[LocalResult, dict[str, RangeEvidence], dict[str, tuple[float, float, float]], GraphInfo]:
    """One stream over the evaluation images: a reference run_all and a local run per image."""
    import onnx

    spec = stages.spec
    target_path = stages.target_impl().onnx_model()
    if target_path is None:
        raise ConfigError(
            f"{spec.name}: target kind {spec.target.kind!r} runs a compiled model; the local-error model is built "
            "from an ONNX QDQ model, so diagnose the entry's 'ort-int8' (or 'onnx') counterpart instead."
        )
    reference_model = onnx.load(str(spec.reference))
    _, reference_infos = describe(reference_model)
    target_model = onnx.load(str(target_path))
    local = build_local_model(target_model, reference_infos, spec.name)
    key = stable_hash("local-model", spec.reference, stages.target_key(), ort_version())

    def build(folder: Path) -> tuple[Path, dict[str, str]]:
        onnx.save(local.model, str(folder / "model.local.onnx"))
        return folder / "model.local.onnx", {"model": "model.local.onnx"}

    def load(_data: object, folder: Path) -> Path | None:
        return folder / "model.local.onnx" if (folder / "model.local.onnx").is_file() else None

    path = stages.ctx.cache.cached("diagnose-local", key, build, load)
    runner = OrtRunner(f"{spec.name} (local)", path)
    quantizers = {
        q.reference: q for q in activation_quantizers(target_model, reference_infos, spec.name) if q.reference
    }
    slices = {name: out.slices for name, out in spec.outputs.items()}
    observer = RangeObserver(quantizers, slices)
    name, size = stages.io()
    rows = [(t.index, t.name, t.op_type) for t in stages.reference.graph().tensors]
    feeds = ((i, f) for i, f, _ in iter_feeds(spec, stages.eval_images(), name, size))
    with progress.task(spec.name, "diagnose local", len(stages.eval_images())) as bar:  # image i/N
        result = stream_local(spec.name, stages.reference, runner, local, rows, bar.each(feeds), slices, [observer])
    return result, observer.evidence(), observer.observed, GraphInfo.from_model(reference_model)


def _accumulated(stages: ModelStages) -> tuple[dict[str, tuple[float, float]], Any]:
    comparison = stages.comparison()
    acc = {r.tensor: (r.metrics.cosine_mean, r.metrics.sqnr_db_mean) for r in comparison.layers}
    return acc, comparison


def _baseline_verdicts(stages: ModelStages, wanted: tuple[str, ...]) -> list[GateVerdict]:
    spec = stages.spec
    outputs = stages.comparison() if any(g in OUTPUT_GATES or g == "layer_cosine" for g in wanted) else None
    accuracy: Any = None
    if spec.task is not None and any(g in ACCURACY_GATES for g in wanted):
        accuracy = stages.accuracy()
    return verdicts_for(spec, outputs, accuracy, wanted)


def candidates_for(diagnosis: Diagnosis, top_k: int) -> list[Candidate]:
    """The top-K quantized layers by worst local SQNR (ties in topological order), one per node.

    Followers of an origin (a Reshape repeating its input's quantizer) are left out: the origin stands for them.
    """
    followers = {f for o in diagnosis.origins for f in o.followers}
    rows = [
        r
        for r in diagnosis.local.rows
        if r.quantized and diagnosis.graph.node.get(r.tensor) and r.tensor not in followers
    ]
    rows.sort(key=lambda r: (r.worst_sqnr_db(), r.index))
    out: list[Candidate] = []
    seen: set[str] = set()
    for r in rows:
        node = diagnosis.graph.node[r.tensor]
        if node in seen:
            continue
        seen.add(node)
        out.append(Candidate(node, r.tensor, r.op_type, r.worst_sqnr_db()))
        if len(out) >= top_k:
            break
    return out


def _diagnose(stages: ModelStages) -> Diagnosis:
    spec = stages.spec
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    accumulated, _ = _accumulated(stages)
    timings["comparison_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local, ranges, observed, graph = local_and_ranges(stages)
    timings["local_and_ranges_s"] = time.perf_counter() - t0
    origins, notes = find_origins(spec.name, local.rows, accumulated, ranges, observed, graph, spec.thresholds)
    patterns = {r.tensor: pattern_of(r.tensor, graph, ranges, observed) for r in local.rows if r.quantized}
    labelled = spec.task is not None and is_labelled(stages.task(), stages.eval_images())
    wanted = tuple(g for g in (*ADVICE_GATES, "layer_cosine") if spec.applies(g))
    baseline = _baseline_verdicts(stages, wanted)
    result = Diagnosis(
        model=spec.name,
        target_kind=spec.target.kind,
        images=local.images,
        local=local,
        ranges=ranges,
        observed=observed,
        graph=graph,
        accumulated=accumulated,
        origins=origins,
        patterns=patterns,
        failing_gates=[v.gate for v in baseline if not v.passed],
        notes=[*local.notes, *notes],
        timings=timings,
    )
    if stages.target_impl().requantize() is None:
        result.notes.append(
            f"{spec.name}: target kind {spec.target.kind!r} is compared as it is; sensitivity and advice need "
            "re-quantization ('ort-int8'), so only local error, ranges and origins are reported."
        )
        return result
    variants = Variants(stages)
    import onnx

    reference_model = onnx.load(str(spec.reference))
    all_nodes = [n.name for n in reference_model.graph.node if n.name and n.op_type != "Constant"]
    unnamed = sum(1 for n in reference_model.graph.node if not n.name and n.op_type != "Constant")
    if unnamed:
        result.notes.append(f"{spec.name}: {unnamed} unnamed node(s) cannot be kept float by name; they are skipped.")
    t0 = time.perf_counter()
    candidates = candidates_for(result, spec.diagnose.top_k)
    if candidates:
        result.sensitivity = measure(variants, candidates, all_nodes, labelled, result.failing_gates)
        alone = [(r.node, r.tensor, r.quick_only, r.quick_only_worst) for r in result.sensitivity.rows]
        result.origins = add_sensitive(
            result.origins, local.rows, alone, accumulated, ranges, observed, graph, spec.thresholds
        )
    timings["sensitivity_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result.advice = advise(stages, variants, result, all_nodes, labelled, baseline)
    timings["advice_s"] = time.perf_counter() - t0
    return result


def advise(
    stages: ModelStages,
    variants: Variants,
    diagnosis: Diagnosis,
    all_nodes: list[str],
    labelled: bool,
    baseline: list[GateVerdict],
) -> Advice:
    """Search the fewest layers to keep in higher precision, verify them, write the YAML and SNPE outputs."""
    import onnx

    spec = stages.spec
    settings = spec.diagnose
    goal = list(goal_gates(spec, labelled))
    base_goal = [v for v in baseline if v.gate in goal]
    advice = Advice(model=spec.name, precision=settings.advice_precision, goal=goal, baseline=base_goal, needed=False)
    if not goal or all(v.passed for v in base_goal):
        advice.message = advice_message(spec, goal, baseline=baseline)
        return advice
    advice.needed = True
    ranking = diagnosis.sensitivity.ranking() if diagnosis.sensitivity is not None else []
    origin_nodes = [o.node for o in diagnosis.origins if o.node and o.node in all_nodes]
    # then, untested by sensitivity, the next layers by local error: the prefix stops at max_float_layers anyway
    more = [c.node for c in candidates_for(diagnosis, len(ranking) + settings.max_float_layers)]
    advice.candidates = list(dict.fromkeys([*ranking, *origin_nodes, *more]))
    outputs_of = {n.name: [o for o in n.output if o] for n in onnx.load(str(spec.reference)).graph.node}

    def variant_of(layers: tuple[str, ...]) -> Variant:
        if settings.advice_precision == "int16":
            tensors = tuple(t for n in layers for t in outputs_of.get(n, []) if t in diagnosis.observed)
            return Variant(int16_tensors=tensors)
        return Variant(float_nodes=layers)

    def evaluate(layers: tuple[str, ...]) -> Trial:
        search.advance(note=f"{len(layers)} layer(s) kept")  # the trial variant about to be built and measured
        variant = variant_of(layers)
        verdicts: list[GateVerdict] = []
        out_goal = [g for g in goal if g in OUTPUT_GATES]
        if out_goal:
            verdicts += verdicts_for(spec, variants.outputs(variant), None, out_goal)
        acc_goal = [g for g in goal if g in ACCURACY_GATES]
        tie = math.nan
        if acc_goal and all(v.passed for v in verdicts):
            acc = variants.accuracy(variant)
            verdicts += verdicts_for(spec, None, acc, acc_goal)
            if labelled:
                task = stages.task()
                tie = task.score(acc, task.diagnosis_metrics[0], "target")
        passed = len(verdicts) == len(goal) and all(v.passed for v in verdicts)
        return Trial(layers, passed, score_of(verdicts, tie), summarize(verdicts), tuple(verdicts))

    with progress.task(spec.name, "diagnose advice") as search:  # variant k (the search decides how many)
        best, trials = greedy_keep(advice.candidates, evaluate, settings.max_float_layers)
    advice.trials = trials
    chosen = best.layers if best is not None else (trials[-1].layers if trials else ())
    advice.layers = list(chosen)
    advice.tensors = [t for n in chosen for t in outputs_of.get(n, [])]
    if not chosen:
        advice.message = advice_message(spec, goal, baseline=baseline, candidates=len(advice.candidates))
        return advice
    advice.verification = verify(
        stages, variants, variant_of(chosen), list(chosen), advice.tensors, goal, settings.advice_precision
    )
    ver = advice.verification
    reference_model = onnx.load(str(spec.reference))
    if settings.advice_precision == "int16":
        quantized = onnx.load(ver.model_path)
        advice.snpe_overrides = snpe_overrides(reference_model, (), int16_encodings(quantized, advice.tensors))
    else:
        advice.snpe_overrides = snpe_overrides(reference_model, chosen)
    non_goal = [v for v in ver.verdicts if v.gate not in goal]
    note = "verified: " + summarize(ver.verdicts)
    int16 = settings.advice_precision == "int16"
    advice.yaml_entry = yaml_entry(
        spec,
        () if int16 else chosen,
        non_goal,
        note=note,
        what=f"{len(advice.tensors)} tensor(s) at 16-bit activations" if int16 else "",
        int16_tensors=advice.tensors if int16 else (),
    )
    advice.message = advice_message(
        spec, goal, baseline=baseline, chosen=chosen, verification=ver, candidates=len(advice.candidates)
    )
    return advice


def verify(
    stages: ModelStages,
    variants: Variants,
    variant: Variant,
    layers: list[str],
    tensors: list[str],
    goal: list[str],
    precision: str,
) -> Verification:
    """Quantize the advised variant and evaluate every similarity and accuracy gate that applies, now."""
    spec = stages.spec
    wanted = [g for g in (*ADVICE_GATES, "layer_cosine") if spec.applies(g)]
    name = f"{spec.name}-advised"
    accuracy: Any = None
    if precision == "float":
        advised = ModelStages(variants.spec_for(variant, name=name), stages.ctx)
        comparison = advised.comparison()
        if spec.task is not None:
            accuracy = advised.accuracy()
        model_path = str(advised.target().model_path())
    else:
        comparison = variants.outputs(variant)
        if spec.task is not None:
            accuracy = variants.accuracy(variant)
        model_path = str(variants.runner(variant).model_path())
    verdicts = verdicts_for(spec, comparison, accuracy, wanted)
    metrics: dict[str, float] = stages.task().metrics(accuracy) if accuracy is not None else {}
    for row in comparison.outputs:
        metrics[f"{row.output}.cosine"] = row.metrics.cosine_mean
        metrics[f"{row.output}.sqnr_db"] = row.metrics.sqnr_db_mean
    decided = {v.gate for v in verdicts}
    passed = all(g in decided for g in goal) and all(v.passed for v in verdicts if v.gate in goal)
    return Verification(
        name=name,
        layers=layers,
        tensors=tensors,
        precision=precision,
        goal=goal,
        passed=passed,
        verdicts=verdicts,
        metrics={k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))},
        model_path=model_path,
    )
