"""Mixed-precision advice: the fewest layers kept in higher precision until the model's gates pass, verified.

Search (``greedy_keep``): add layers in sensitivity order until the goal gates pass (at most
``max_float_layers``), then try dropping each of them again, latest first, keeping a drop whenever the gates
still pass. Adding in order copes with layers that only help together (the three Concats of a detector decode
that each re-mix boxes and scores); pruning removes what the order dragged in. Every trial is a real variant,
quantized and measured, so the last passing trial *is* the verification.

Outputs: a complete models.yaml entry ``<name>-advised`` (``float_nodes``, same data and thresholds, ``expect``
set to the verified outcome of the gates outside the goal) and an SNPE/QNN ``--quantization_overrides`` file in
the AIMET encodings format (legacy dictionary form)::

    {"activation_encodings": {"<tensor>": [{"bitwidth": 16, "dtype": "float"}]},
     "param_encodings": {"<weight>": [{"bitwidth": 16, "dtype": "float"}]}}

A float layer lists its output tensors and its parameters (weights, bias) with ``dtype: float``; the bitwidth is
16 because the Hexagon HTP runs float ops in fp16 (the host verification runs them in fp32). With
``advice_precision: int16`` the layer's output tensors get ``{"bitwidth": 16, "dtype": "int", "is_symmetric":
"False", "min", "max", "scale", "offset"}`` read from the verified 16-bit variant (``offset`` = -zero point, as
SNPE writes ``real = scale * (q + offset)``); its parameters stay 8-bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qc import gates
from qc.compare.layerwise import Comparison
from qc.config import ModelSpec, assets_dir

ADVICE_GATES = gates.advice_gates()
"""The gates advice may aim at, from the gate registry: output similarity and every task's accuracy gates."""
OUTPUT_GATES = tuple(g for g in ADVICE_GATES if gates.gate_info(g).needs == "comparison")
ACCURACY_GATES = tuple(g for g in ADVICE_GATES if gates.gate_info(g).needs == "accuracy")


def goal_gates(spec: ModelSpec, labelled: bool) -> tuple[str, ...]:
    """The gates the advice must make pass.

    With a task, the accuracy gates that apply (AP drop budgets with labels, agreement AP): what detection
    quality needs. Without a task, the output cosine and SQNR gates on every output and declared slice. An
    explicit ``diagnose.advice_gates`` (when the entry has that setting) wins.
    """
    explicit = spec.diagnose.advice_gates
    if explicit:
        return tuple(g for g in explicit if spec.applies(g))
    if spec.task is not None:
        wanted = gates.gates_needing("accuracy", task=spec.task.kind)
        return tuple(g for g in wanted if spec.applies(g) and (labelled or not gates.gate_info(g).labels))
    return tuple(g for g in OUTPUT_GATES if spec.applies(g))


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Trial:
    """One measured set of layers kept in higher precision."""

    layers: tuple[str, ...]
    passed: bool
    score: float
    summary: str
    verdicts: tuple[GateVerdict, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trial:
        return cls(
            tuple(data["layers"]),
            data["passed"],
            data["score"],
            data["summary"],
            tuple(GateVerdict(**v) for v in data["verdicts"]),
        )


def greedy_keep(
    candidates: Sequence[str], evaluate: Callable[[tuple[str, ...]], Trial], max_layers: int
) -> tuple[Trial | None, list[Trial]]:
    """Fewest candidates (in their order) with ``evaluate(...).passed``: add in order, then prune latest first.

    Returns the passing trial (None when no prefix of at most ``max_layers`` passes) and every trial made.
    """
    trials: list[Trial] = []
    memo: dict[tuple[str, ...], Trial] = {}
    order = {c: i for i, c in enumerate(candidates)}

    def run(layers: Sequence[str]) -> Trial:
        key = tuple(sorted(set(layers), key=lambda c: order[c]))
        if key not in memo:
            memo[key] = evaluate(key)
            trials.append(memo[key])
        return memo[key]

    chosen: list[str] = []
    best: Trial | None = None
    for c in candidates:
        if len(chosen) >= max_layers:
            break
        chosen.append(c)
        trial = run(chosen)
        if trial.passed:
            best = trial
            break
    if best is None:
        return None, trials
    for c in list(reversed(chosen)):
        if len(chosen) == 1:
            break
        trial = run([x for x in chosen if x != c])
        if trial.passed:
            chosen.remove(c)
            best = trial
    return best, trials


def verdicts_for(
    spec: ModelSpec, outputs: Comparison | None, accuracy: Any, wanted: Sequence[str]
) -> list[GateVerdict]:
    """Gate verdicts, through qc.gates, for the gates in ``wanted`` that the given results can decide."""
    out: list[GateVerdict] = []
    evidence = gates.Evidence(spec, comparison=outputs, accuracy=accuracy)
    for gate in wanted:
        info = gates.gate_info(gate)
        # a variant's output-only comparison has no layers: layer_cosine is then undecided, not failed
        if getattr(evidence, info.needs) is None or (gate == "layer_cosine" and not (outputs and outputs.layers)):
            continue
        result = info.check(evidence)
        out.append(GateVerdict(result.gate, result.passed, result.message))
    return out


@dataclass
class Verification:
    """The advised variant, quantized and measured in the same run."""

    name: str
    layers: list[str]
    tensors: list[str]
    precision: str
    goal: list[str]
    passed: bool
    verdicts: list[GateVerdict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    model_path: str = ""

    def failing(self) -> list[GateVerdict]:
        return [v for v in self.verdicts if v.gate in self.goal and not v.passed]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verification:
        return cls(**{**data, "verdicts": [GateVerdict(**v) for v in data["verdicts"]]})


@dataclass
class Advice:
    model: str
    precision: str
    goal: list[str]
    baseline: list[GateVerdict]
    """The entry's own verdicts on the goal gates (why advice is needed)."""
    needed: bool
    layers: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    verification: Verification | None = None
    yaml_entry: str = ""
    snpe_overrides: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def passed(self) -> bool:
        return not self.needed or (self.verification is not None and self.verification.passed)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Advice:
        ver = data.get("verification")
        return cls(
            **{
                **data,
                "baseline": [GateVerdict(**v) for v in data["baseline"]],
                "trials": [Trial.from_json(t) for t in data["trials"]],
                "verification": Verification.from_json(ver) if ver is not None else None,
            }
        )


# -- outputs of the advice ---------------------------------------------------------------------------------


def _templated(value: Any) -> Any:
    """Paths under the demo asset folder written back as ${QC_ASSETS}/..., so the entry stays portable."""
    root = str(assets_dir())
    if isinstance(value, str) and root and (value == root or value.startswith(root + os.sep)):
        return "${QC_ASSETS}" + value[len(root) :]
    if isinstance(value, dict):
        return {k: _templated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_templated(v) for v in value]
    return value


def yaml_entry(
    spec: ModelSpec,
    float_nodes: Sequence[str],
    verdicts: Sequence[GateVerdict],
    *,
    note: str = "",
    what: str = "",
    int16_tensors: Sequence[str] = (),
) -> str:
    """A complete models.yaml list item ``<name>-advised``: the entry with ``float_nodes`` (or ``int16_tensors``)
    added.

    ``expect`` is set to ``fail`` for each verified gate that failed, so adding the entry keeps the bench green
    while recording what the advice does not fix.
    """
    data = spec.model_dump(mode="json", exclude_defaults=True, exclude={"expect", "name", "description"})
    target = dict(data.get("target", {}))
    target["kind"] = spec.target.kind
    nodes = list(dict.fromkeys([*getattr(spec.target, "float_nodes", ()), *float_nodes]))
    target["float_nodes"] = nodes
    if int16_tensors:
        base = getattr(spec.target, "int16_tensors", ())
        target["int16_tensors"] = list(dict.fromkeys([*base, *int16_tensors]))
    data["target"] = target
    entry: dict[str, Any] = {
        "name": f"{spec.name}-advised",
        "description": (
            f"{spec.name} with {what or f'{len(float_nodes)} layer(s) kept in float'}, as advised by qc diagnose"
            + (f"; {note}" if note else ".")
        ),
        **_templated(data),
    }
    failed = sorted({v.gate for v in verdicts if not v.passed})
    if failed:
        entry["expect"] = dict.fromkeys(failed, "fail")
    text = yaml.safe_dump([entry], sort_keys=False, width=118, default_flow_style=None)
    return "# generated by qc diagnose; paste under 'models:' (indent by two spaces)\n" + text


def models_file(entry: str) -> str:
    body = "\n".join(("  " + line) if line and not line.startswith("#") else line for line in entry.splitlines())
    return "models:\n" + body + "\n"


def snpe_overrides(
    model: Any,
    float_nodes: Sequence[str],
    int16: Mapping[str, Mapping[str, float]] | None = None,
    *,
    float_bitwidth: int = 16,
) -> dict[str, Any]:
    """The AIMET-format override file for ``snpe-dlc-quant``/``qnn-onnx-converter --quantization_overrides``.

    ``int16`` maps a tensor to its verified 16-bit encoding (``min``, ``max``, ``scale``, ``offset``).
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    wanted = set(float_nodes)
    activations: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, list[dict[str, Any]]] = {}
    for node in graph.node:
        if node.name not in wanted:
            continue
        for out in node.output:
            if out:
                activations[out] = [{"bitwidth": float_bitwidth, "dtype": "float"}]
        for name in node.input:
            if name in inits:
                params[name] = [{"bitwidth": float_bitwidth, "dtype": "float"}]
    for tensor, enc in (int16 or {}).items():
        activations[tensor] = [
            {
                "bitwidth": 16,
                "dtype": "int",
                "is_symmetric": "False",
                "min": float(enc["min"]),
                "max": float(enc["max"]),
                "scale": float(enc["scale"]),
                "offset": int(enc["offset"]),
            }
        ]
    return {"activation_encodings": activations, "param_encodings": params}


def int16_encodings(quantized: Any, tensors: Sequence[str]) -> dict[str, dict[str, float]]:
    """SNPE encodings (min, max, scale, offset) of ``tensors`` as a 16-bit QDQ model quantizes them."""
    from qc.diagnose.qdq import activation_quantizers

    found = {q.reference or q.tensor: q for q in activation_quantizers(quantized, tensors, "advice")}
    out: dict[str, dict[str, float]] = {}
    for t in tensors:
        q = found.get(t)
        if q is None or q.per_channel:
            continue
        scale = float(q.scale.reshape(-1)[0])
        zp = int(q.zero_point.reshape(-1)[0])
        out[t] = {"min": (q.qmin - zp) * scale, "max": (q.qmax - zp) * scale, "scale": scale, "offset": -zp}
    return out


def summarize(verdicts: Sequence[GateVerdict]) -> str:
    return "; ".join(f"{'PASS' if v.passed else 'FAIL'} {v.gate}" for v in verdicts)


def score_of(verdicts: Sequence[GateVerdict], tie: float = math.nan) -> float:
    """A scalar for reports: how many goal gates pass (ties broken by the task's labelled metric when known,
    e.g. the target's AP; ``tie`` in [0, 1])."""
    return sum(v.passed for v in verdicts) + (0.0 if math.isnan(tie) else tie / 10.0)


def write_text(path: Path, text: str) -> Path:
    from qc.cache import atomic_write_text

    atomic_write_text(path, text)
    return path


# -- what the advice aims at, and what it leaves failing -----------------------------------------------------


def goal_targets(spec: ModelSpec, goal: Sequence[str]) -> list[str]:
    """Each goal gate with the threshold it aims at, read from the entry's thresholds (never a constant).

    A task's agreement gate says whether its threshold is the calibrated default (``qc calibrate``,
    docs/calibration.md) or the entry's own value.
    """
    from qc.tasks import task_class

    out: list[str] = []
    thresholds = spec.thresholds
    calibration = None
    if spec.task is not None:
        calibration = getattr(task_class(spec.task.kind), "calibration", None)
    for gate in goal:
        text = gate
        if calibration is not None and gate == calibration.agreement.gate:
            name = calibration.agreement.threshold
            origin = "set in the entry" if name in thresholds.model_fields_set else "the calibrated default"
            text = f"{gate} ({calibration.agreement.metric} >= {name} {getattr(thresholds, name):g}, {origin})"
        elif calibration is not None and gate in {b.gate for b in calibration.budgets}:
            budget = next(b for b in calibration.budgets if b.gate == gate)
            text = f"{gate} ({budget.metric} <= {budget.threshold} {getattr(thresholds, budget.threshold):g})"
        elif gate == "output_cosine":
            text = f"{gate} (cosine >= output_cosine {thresholds.output_cosine:g} or its per-tensor override)"
        elif gate == "output_sqnr":
            text = f"{gate} (SQNR >= output_sqnr_db {thresholds.output_sqnr_db:g} dB or its per-tensor override)"
        out.append(text)
    return out


def still_failing(verdicts: Sequence[GateVerdict]) -> str:
    """A sentence naming every gate that fails in ``verdicts`` (goal or not), or saying that none does."""
    failing = [v for v in verdicts if not v.passed]
    if not failing:
        return f"no gate of the {len(verdicts)} verified fails."
    return f"{len(failing)} of {len(verdicts)} verified gates still fail: " + "; ".join(
        f"{v.gate} ({v.message})" for v in failing
    )


def advice_message(
    spec: ModelSpec,
    goal: Sequence[str],
    *,
    baseline: Sequence[GateVerdict],
    chosen: Sequence[str] = (),
    verification: Verification | None = None,
    candidates: int = 0,
) -> str:
    """The diagnosis' conclusion: what it aimed at (the thresholds, from the entry) and what it advises, and in
    every case which gates still fail afterwards (after the advised change; with no change, as configured)."""
    settings = spec.diagnose
    aim = "; ".join(goal_targets(spec, goal))
    if not goal:
        return f"{spec.name}: no gate to aim at (the entry runs none of {list(ADVICE_GATES)})."
    base_goal = [v for v in baseline if v.gate in goal]
    if verification is None:
        if all(v.passed for v in base_goal):
            return (
                f"{spec.name}: passes its goal gates as configured [{aim}]; nothing to keep in higher precision. "
                f"As configured, {still_failing(baseline)}"
            )
        return (
            f"{spec.name}: fails {[v.gate for v in base_goal if not v.passed]} of its goal [{aim}] and no layer could "
            f"be tried (max_float_layers {settings.max_float_layers}, {candidates} candidate(s)). As configured, "
            f"{still_failing(baseline)}"
        )
    after = f"After the advised change, {still_failing(verification.verdicts)}"
    if verification.passed:
        passed = summarize([v for v in verification.verdicts if v.gate in goal])
        return (
            f"{spec.name}: keep {len(chosen)} layer(s) in {settings.advice_precision} ({', '.join(chosen)}): the "
            f"verified variant passes its goal [{aim}] ({passed}). {after}"
        )
    return (
        f"{spec.name}: no set of at most {settings.max_float_layers} layer(s) among {candidates} candidate(s) makes "
        f"its goal [{aim}] pass; the largest tried ({', '.join(chosen)}) is reported. {after}"
    )
