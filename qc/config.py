"""models.yaml: typed model entries validated by pydantic v2.

Every problem of a bad file is reported at once as ``models.yaml:LINE:COL: field: message``.
Paths are relative to the models.yaml folder and may use ``${QC_ASSETS}`` (the demo asset folder) and other
environment variables.

Why one module of ~750 lines: it is the schema of one file, read top to bottom as models.yaml is (devices, targets,
preprocessing, data, tasks, thresholds, the entry, the project), and every class shares the string/path expansion
and the ``LINE:COL`` error bookkeeping at the bottom; the target- and task-specific settings that grow with new kinds
are the parts to move out first when it grows further.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from qc.errors import ConfigError
from qc.gates import GATE_NAMES, gate_info
from qc.yamlpos import dotted, load_yaml_with_positions

if TYPE_CHECKING:
    from qc.eval.segmentation import MaskSource, SegDecode
    from qc.tasks.base import Headline

GATES = GATE_NAMES
"""Every gate name, in report order (from the gate registry, :mod:`qc.gates`)."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SQNR_DB_MIN, SQNR_DB_MAX = -50.0, 200.0  # float32 rounding alone gives ~150 dB; below -50 dB nothing is compared


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class QuantSettings(Strict):
    """Quantization settings, named after SNPE's ``snpe-dlc-quant`` flags."""

    per_channel: bool = True
    activation_bitwidth: Literal[8, 16] = 8
    weight_bitwidth: Literal[8] = 8
    activation_quantizer: Literal["tf", "enhanced", "symmetric"] = "tf"
    float_nodes: tuple[str, ...] = ()
    float_op_types: tuple[str, ...] = ()
    float_downstream_of: tuple[str, ...] = Field(
        default=(), description="Tensor names: every node that consumes them, directly or not, stays in float."
    )
    int16_tensors: tuple[str, ...] = Field(
        default=(), description="Tensors whose activations are quantized to 16 bits (mixed precision overrides)."
    )
    bias_bitwidth: Literal[8, 32] = Field(
        default=32,
        description="snpe-dlc-quant --bias_bitwidth: 32 (int32 biases at input scale x weight scale) or 8 (int8 "
        "biases with their own per-tensor scale).",
    )


class OrtInt8Target(QuantSettings):
    """The embedded default: the reference ONNX quantized on the host (static QDQ) and run on onnxruntime CPU."""

    kind: Literal["ort-int8"]


class OnnxTarget(Strict):
    """An already quantized or converted ONNX file (AIMET, NNCF, onnxruntime QDQ), compared as it is."""

    kind: Literal["onnx"]
    model: Path


Runtime = Literal["dsp", "cpu", "gpu", "gpu_fp16"]


class SnpeTarget(Strict):
    """A DLC run with the SNPE tools on a device (over SSH) or with a local SDK."""

    kind: Literal["snpe"]
    dlc: Path
    devices: tuple[str, ...] = Field(min_length=1, description="Names from the top-level 'devices' list: a pool.")
    runtime: Runtime | None = Field(default=None, description="Overrides the device's runtime.")
    perf_profile: str | None = Field(default=None, description="Overrides the device's perf profile.")
    batch_size: int = Field(default=8, gt=0, description="Images per snpe-net-run call (lower it on rc 137).")
    native_io: bool = Field(default=True, description="--use_native_input_files/--use_native_output_files.")
    throughput_duration_s: int = Field(default=10, gt=0, description="snpe-throughput-net-run --duration.")
    keep_on_failure: bool = Field(default=False, description="Keep the device run folder when a stage fails.")


# QNN's SoC table (Qnn_SocModel_t in QNN's QnnTypes.h): QNN_SOC_MODEL_QCS8550 = 66, the IoT sibling of
# SM8550 (= 43); both are Hexagon v73 parts with 8 MB of VTCM. The RVC4 is a QCS8550.
RVC4_SOC_MODEL: Final = 66
RVC4_HTP_ARCH: Final = 73


class QnnHtpTarget(QuantSettings):
    """The reference quantized on the host (QDQ, SNPE-named settings) and run on Qualcomm's HTP backend
    (the simulator that ships with ``onnxruntime-qnn``), CPU fallback disabled."""

    kind: Literal["qnn-htp"]
    precision: Literal["quantized", "fp16"] = Field(
        default="quantized",
        description="quantized: the QDQ model from the quantization settings; fp16: the FP32 reference in HTP fp16.",
    )
    htp_arch: Literal[68, 69, 73, 75, 79, 81] = Field(
        default=RVC4_HTP_ARCH, description="Hexagon HTP architecture (RVC4: v73)."
    )
    soc_model: int = Field(
        default=RVC4_SOC_MODEL, ge=1, description="QNN SoC model number (QNN's SoC table; RVC4's QCS8550: 66)."
    )
    profiling: Literal["off", "basic", "detailed"] = Field(
        default="detailed", description="QNN profiling level of the timed run."
    )
    htp_clock_mhz: float | None = Field(
        default=None,
        gt=0,
        description="The HTP clock of your device, from its documentation: turns the simulator's cycles into an "
        "FPS estimate (speed.fps_source: htp-cycles-estimate). qc knows no documented clock and never assumes one.",
    )


QNN_PERF_PROFILES: Final = (
    "low_balanced",
    "balanced",
    "default",
    "high_performance",
    "sustained_high_performance",
    "burst",
    "low_power_saver",
    "power_saver",
    "high_power_saver",
    "extreme_power_saver",
    "system_settings",
)
"""``qnn-net-run --perf_profile`` values (QNN SDK documentation)."""


class QnnDeviceTarget(QuantSettings):
    """A QNN context binary run with ``qnn-net-run --retrieve_context`` on the HTP of a device (over SSH): final
    outputs and per-op time (``qnn-profile-viewer``). Per-layer tensors are not available from a context binary
    (``qnn-net-run --debug`` refuses ``--retrieve_context``): per-layer similarity comes from the ``qnn-htp`` host
    target. Without ``context_binary``, qc exports one from the reference with the quantization settings (SNPE-named,
    as ``ort-int8``/``qnn-htp``) for ``htp_arch``/``soc_model``; the defaults are the RVC4's QCS8550 (Hexagon v73)."""

    kind: Literal["qnn"]
    context_binary: Path | None = Field(
        default=None,
        description="A context binary prepared for the device's HTP; none: export one from the reference with the "
        "quantization settings for htp_arch/soc_model (needs 'calibration' and onnxruntime-qnn on this machine).",
    )
    source_model: Path | None = Field(
        default=None, description="The ONNX model the context was prepared from (maps profiled ops to ONNX nodes)."
    )
    devices: tuple[str, ...] = Field(min_length=1, description="Names from the top-level 'devices' list: a pool.")
    backend: str = Field(default="libQnnHtp.so", description="qnn-net-run --backend (found via LD_LIBRARY_PATH).")
    batch_size: int = Field(default=8, gt=0, description="Images per qnn-net-run call.")
    native_io: bool = Field(default=True, description="--use_native_input_files/--use_native_output_files.")
    io_layout: Literal["auto", "onnx", "nhwc"] = Field(
        default="auto",
        description="Layout of the context's 4-D I/O: auto decides from the dimensions (refusing ambiguous ones).",
    )
    profiling: Literal["basic", "detailed"] = Field(default="detailed", description="--profiling_level of timed runs.")
    perf_profile: str | None = Field(default=None, description="Overrides the device's perf profile.")
    speed_inferences: int = Field(default=50, gt=0, description="Inferences of the speed run (NetRun IPS).")
    htp_arch: Literal[68, 69, 73, 75, 79, 81] = Field(
        default=RVC4_HTP_ARCH, description="HTP architecture an exported context is for (RVC4: v73)."
    )
    soc_model: int = Field(default=RVC4_SOC_MODEL, ge=1, description="QNN SoC number an exported context is for.")
    keep_on_failure: bool = Field(default=False, description="Keep the device run folder when a stage fails.")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if _CONTROL_CHAR.search(value) is not None or not value.strip():
            raise ValueError(f"backend {value!r} must be a library name or path without control characters")
        return value

    @field_validator("perf_profile")
    @classmethod
    def _perf(cls, value: str | None) -> str | None:
        if value is not None and value not in QNN_PERF_PROFILES:
            raise ValueError(f"perf_profile {value!r} is not one of {', '.join(QNN_PERF_PROFILES)}")
        return value


Target = Annotated[
    OrtInt8Target | OnnxTarget | SnpeTarget | QnnHtpTarget | QnnDeviceTarget, Field(discriminator="kind")
]


class SshAuth(Strict):
    """Where the secret comes from; never the secret itself (models.yaml is committed)."""

    key_file: Path | None = None
    passphrase_env: str | None = Field(default=None, description="Environment variable holding the key passphrase.")
    password_env: str | None = Field(default=None, description="Environment variable holding the password.")
    agent: bool = False
    dotenv: Path | None = Field(default=None, description="A .env file the variables may come from.")

    @model_validator(mode="after")
    def _one_method(self) -> SshAuth:
        if self.key_file is None and self.password_env is None and not self.agent:
            raise ValueError("give key_file, password_env or agent: true")
        return self


_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class DeviceSpec(Strict):
    """A device the SNPE tools run on: over SSH, or this machine (``local: true``) with an SDK installed."""

    name: str
    local: bool = False
    host: str | None = None
    port: int = Field(default=22, gt=0, lt=65536)
    user: str | None = None
    auth: SshAuth | None = None
    known_hosts: Path | None = Field(default=None, description="Host keys checked against it (default ~/.ssh).")
    trust_new_host_key: bool = Field(default=False, description="Record an unknown host key instead of refusing.")
    remote_root: str = Field(default="/data/local/tmp", description="Each run works in <remote_root>/qc-<run id>/.")
    setup: str | None = Field(default=None, description="Shell line run before every tool, e.g. 'source env.sh'.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment for the tools (library paths).")
    runtime: Runtime = "dsp"
    perf_profile: str = "balanced"
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("host", "user", "remote_root")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        # A newline in a remote path could split the device's answers (e.g. 'pwd -P') and steer a delete.
        found = _CONTROL_CHAR.search(value or "")
        if found is not None:
            raise ValueError(
                f"must not contain control characters; found {found.group()!r} at offset {found.start()} in {value!r}"
            )
        return value

    @field_validator("remote_root")
    @classmethod
    def _absolute_root(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path on the device, found {value!r}")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> DeviceSpec:
        if not self.local and (self.host is None or self.user is None or self.auth is None):
            raise ValueError("an SSH device needs host, user and auth (or set local: true)")
        return self


class Preprocess(Strict):
    """How an RGB image of 0..255 pixels becomes the model input: ``(pixel * scale - mean) / std``."""

    input: str | None = Field(default=None, description="Input tensor name; optional for one-input models.")
    size: tuple[int, int] | None = Field(
        default=None, description="(height, width); required when the model's input dims are dynamic."
    )
    mode: Literal["letterbox", "resize", "center_crop"] = "letterbox"
    pad_value: float = Field(default=114.0, ge=0, le=255, description="Letterbox padding, in 0..255 pixels.")
    resize_short: int | None = Field(
        default=None,
        gt=0,
        description="center_crop: the shorter side is resized to this, then the centre is cropped to size "
        "(default: the larger of size / 0.875, as in ImageNet's resize 256 + crop 224).",
    )
    interpolation: Literal["bilinear", "bicubic", "lanczos"] = "bilinear"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    scale: float = Field(default=1.0 / 255.0, gt=0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16", "uint8"] = "float32"

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"every std value must be > 0, found {list(v)}")
        return v

    @model_validator(mode="after")
    def _crop_settings(self) -> Preprocess:
        if self.resize_short is not None and self.mode != "center_crop":
            raise ValueError(f"resize_short applies to mode center_crop only, found mode {self.mode!r}")
        if self.resize_short is not None and self.size is not None and self.resize_short < min(self.size):
            raise ValueError(
                f"resize_short ({self.resize_short}) must be at least the crop's shorter side ({min(self.size)})"
            )
        return self

    @field_validator("size")
    @classmethod
    def _size_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) <= 0:
            raise ValueError(f"size must be two positive integers (height, width), found {list(v)}")
        return v


class CocoData(Strict):
    annotations: Path
    images: Path


class ImageData(Strict):
    """Evaluation or calibration images: a COCO annotation file with its images, or a plain folder."""

    coco: CocoData | None = None
    folder: Path | None = None
    limit: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> ImageData:
        if (self.coco is None) == (self.folder is None):
            raise ValueError("give exactly one of 'coco' (annotations + images) or 'folder'")
        return self


class Slice(Strict):
    """A named channel slice of an output, e.g. boxes = last axis [0:4)."""

    axis: int = -1
    start: int = Field(ge=0)
    stop: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Slice:
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be greater than start ({self.start})")
        return self


class OutputSpec(Strict):
    slices: dict[str, Slice] = Field(default_factory=dict)


class TaskSpec(Strict):
    """Detection post-processing for the accuracy gates (COCO mAP, agreement AP): the ``detection`` task."""

    kind: Literal["detection"] = "detection"
    decoder: str = Field(description="yolo-decoded | yolov6r2 | yolov8 | package.module:function")
    outputs: tuple[str, ...] = Field(default=(), description="Output tensors to decode, in order (default: auto).")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    class_names: Path | tuple[str, ...] = Field(description="A file with one class name per line, or a list.")
    score_threshold: float = Field(default=0.001, ge=0, le=1, description="Evaluation score threshold.")
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=100, gt=0)
    deploy_threshold: float = Field(default=0.25, ge=0, le=1, description="Agreement AP ground-truth threshold.")
    pictures: int = Field(default=3, ge=0, description="Side-by-side pictures of the most-disagreeing images.")

    def names(self) -> list[str]:
        if isinstance(self.class_names, Path):
            return [n.strip() for n in self.class_names.read_text(encoding="utf-8").splitlines() if n.strip()]
        return list(self.class_names)


class CropSettings(Strict):
    """How a top-down model's person crop is cut from a person box (:func:`qc.eval.keypoints.person_crop`)."""

    box_scale: float = Field(default=1.25, gt=0, description="Box sides times this, then grown to the input aspect.")
    border: Literal["replicate", "constant"] = Field(
        default="replicate", description="Pixels outside the image: the border pixels repeated, or pad_value."
    )
    pad_value: float = Field(default=0.0, ge=0, le=255, description="border constant: the fill, in 0..255 pixels.")


class PersonCrops(Strict):
    """Top-down inputs: one crop per labelled person box of the image set (a set without boxes: each whole image)."""

    person_boxes: Literal["ground-truth"] = Field(
        default="ground-truth", description="The labelled person boxes of the image set (category below)."
    )
    person_category: int = Field(default=1, description="The COCO category id of the person boxes.")
    crop: CropSettings = CropSettings()


# issue 14 tasks
class CocoMaskSource(Strict):
    """Ground truth painted from COCO polygons / RLE: category ids mapped to labels, or all objects = foreground."""

    annotations: Path
    foreground: bool = Field(default=False, description="Every annotated object is label 1 (salient objects).")
    category_labels: dict[int, int] | None = Field(default=None, description="COCO category id -> class index.")

    @model_validator(mode="after")
    def _one_rule(self) -> CocoMaskSource:
        if self.foreground == (self.category_labels is not None):
            raise ValueError("give either foreground: true or category_labels, not both nor neither")
        return self


class FolderMaskSource(Strict):
    """VOC-style label masks: ``<image stem>.png`` or ``.npy`` in a folder; 255 = ignore."""

    folder: Path


class SegmentationTask(Strict):
    """Semantic / foreground segmentation for the task metrics (mIoU, mask agreement): the ``segmentation`` task."""

    kind: Literal["segmentation"] = "segmentation"
    output: str | None = Field(default=None, description="Output tensor with the masks (default: the first).")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    activation: Literal["none", "sigmoid", "softmax"] = Field(
        default="none", description="none (already probabilities), sigmoid or softmax."
    )
    threshold: float = Field(default=0.5, ge=0, le=1, description="Foreground threshold of a one-channel output.")
    class_names: tuple[str, ...] = Field(default=(), description="Optional names for the per-class IoU columns.")
    ground_truth: CocoMaskSource | FolderMaskSource | None = Field(
        default=None, description="Without it only the label-free mask agreement is computed."
    )
    boundary_ratio: float = Field(default=0.02, gt=0, lt=1, description="Boundary IoU dilation / image diagonal.")
    pictures: int = Field(default=3, ge=0, description="reference | target | disagreement pictures, worst first.")
    crops: PersonCrops | None = Field(
        default=None,
        description="A top-down model (e.g. a pose model's person mask): one input per person box, each mask "
        "scored inside its crop (pixels outside it are ignored).",
    )

    def decode_spec(self) -> SegDecode:
        from qc.eval.segmentation import SegDecode

        return SegDecode(layout=self.layout, activation=self.activation, threshold=self.threshold)

    def mask_source(self) -> MaskSource | None:
        from qc.eval.masks import CocoMasks, FolderMasks

        gt = self.ground_truth
        if isinstance(gt, CocoMaskSource):
            return CocoMasks(gt.annotations, gt.category_labels, gt.foreground)
        if isinstance(gt, FolderMaskSource):
            return FolderMasks(gt.folder)
        return None


class CsvLabels(Strict):
    csv: Path = Field(description="A CSV with a header 'file,label' (label: class index or class name).")


class NameLabels(Strict):
    pattern: str = Field(description="A regex whose group 'label' (or first group) is the class index.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "label" not in rx.groupindex and rx.groups == 0:
            raise ValueError("the pattern needs a capturing group (or a group named 'label') for the class index")
        return v


class ClassificationTask(Strict):
    """Classifier post-processing for the task metrics (top-1/5 against labels, agreement, KL): ``classification``."""

    kind: Literal["classification"] = "classification"
    output: str | None = Field(default=None, description="Output tensor with the class scores (default: the first).")
    activation: Literal["none", "softmax", "sigmoid"] = Field(
        default="softmax", description="softmax for logits; none for probabilities."
    )
    labels: CsvLabels | NameLabels | None = Field(default=None, description="Without labels only agreement/KL.")
    class_names: tuple[str, ...] = Field(default=(), description="Names for CSV labels given as names.")
    top_k: int = Field(default=5, gt=0)

    def label_of(self) -> Callable[[str], int] | None:
        """A file name -> class index function, or None without labels (CSV read once)."""
        from qc.errors import DataError
        from qc.eval.classification import label_from_name, labels_from_csv

        if isinstance(self.labels, CsvLabels):
            table = labels_from_csv(self.labels.csv, self.class_names)
            source = self.labels.csv

            def from_csv(name: str) -> int:
                key = Path(name).name
                if key not in table:
                    raise DataError(f"{source}: no label for image {key}.")
                return table[key]

            return from_csv
        if isinstance(self.labels, NameLabels):
            pattern = self.labels.pattern
            return lambda name: label_from_name(name, pattern)
        return None


class LandmarkLayout(Strict):
    """How a top-down regression model lays out its landmark tensor (:class:`qc.eval.keypoints.RegressionSpec`)."""

    num_keypoints: int = Field(gt=0, description="Points kept from the start of the tensor (MediaPipe pose: 33).")
    values_per_point: int = Field(default=3, gt=0)
    x_index: int = Field(default=0, ge=0)
    y_index: int = Field(default=1, ge=0)
    score_index: int | None = Field(default=2, ge=0, description="The keypoint score value; null: every point 1.")
    score_activation: Literal["sigmoid", "none"] = "none"
    coordinates: Literal["pixels", "normalized"] = Field(default="pixels", description="Of the network input.")

    @model_validator(mode="after")
    def _indices(self) -> LandmarkLayout:
        used = {"x_index": self.x_index, "y_index": self.y_index, "score_index": self.score_index}
        bad = {k: v for k, v in used.items() if v is not None and v >= self.values_per_point}
        if bad:
            raise ValueError(f"{bad} out of range: each index must be below values_per_point ({self.values_per_point})")
        return self


class YoloPoseHead(Strict):
    """A YOLO-pose head ``(1, 4 + classes + 3K, anchors)`` (:class:`qc.eval.keypoints.YoloPoseSpec`)."""

    num_keypoints: int = Field(default=17, gt=0)
    num_classes: int = Field(default=1, gt=0)
    score_threshold: float = Field(default=0.001, ge=0, le=1, description="Evaluation score threshold.")
    iou_threshold: float = Field(default=0.65, ge=0, le=1)
    max_detections: int = Field(default=100, gt=0)
    visibility_activation: Literal["sigmoid", "none"] = "none"


KEYPOINT_MAPS: Final = ("mediapipe-pose-to-coco",)
"""Named keypoint maps (:data:`qc.eval.keypoints.MEDIAPIPE_POSE_TO_COCO`); a list of indices is the general form."""


class KeypointsTask(Strict):
    """Pose estimation (``kind: keypoints``): OKS AP of both sides against keypoint labels, keypoint agreement.

    Top-down decoders (``top-down-regression``, ``top-down-heatmap``) run the model once per person box of the
    evaluation set (``person_boxes``: its labelled boxes of ``person_category``; a plain image folder: each whole
    image is one person), on the crop cut with ``crop``; ``yolo-pose`` runs on whole images like a detector.
    """

    kind: Literal["keypoints"]
    decoder: Literal["top-down-regression", "top-down-heatmap", "yolo-pose"]
    outputs: tuple[str, ...] = Field(
        default=(), max_length=1, description="The landmark / heatmap / head output (default: the first output)."
    )
    person_boxes: Literal["ground-truth"] = Field(
        default="ground-truth", description="Top-down: the labelled person boxes of the image set (category below)."
    )
    person_category: int = Field(default=1, description="Top-down: the COCO category id of the person boxes.")
    crop: CropSettings = CropSettings()
    landmarks: LandmarkLayout | None = Field(default=None, description="top-down-regression: the tensor layout.")
    person_score_output: str | None = Field(
        default=None, description="Top-down: an output holding the person score (e.g. a presence flag); default 1."
    )
    person_score_activation: Literal["sigmoid", "none"] = "none"
    head: YoloPoseHead | None = Field(default=None, description="yolo-pose: the head layout (default 17 points).")
    keypoint_map: Literal["mediapipe-pose-to-coco"] | tuple[int, ...] | None = Field(
        default=None, description="The model's point index of each labelled keypoint, in label order."
    )
    sigmas: Literal["coco"] | tuple[float, ...] = Field(default="coco", description="OKS sigma per keypoint.")
    keypoint_names: tuple[str, ...] | None = Field(default=None, description="Default: COCO's with 17 points.")
    keypoint_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Agreement: a reference point counts when its score reaches this."
    )
    person_threshold: float = Field(
        default=0.25, ge=0, le=1, description="Agreement: a reference person counts when its score reaches this."
    )
    pictures: int = Field(default=3, ge=0, description="Side-by-side pose pictures of the most-disagreeing images.")

    @model_validator(mode="after")
    def _decoder_settings(self) -> KeypointsTask:
        top_down = self.decoder.startswith("top-down")
        given = self.model_fields_set
        if self.decoder == "top-down-regression" and self.landmarks is None:
            raise ValueError("decoder 'top-down-regression' needs 'landmarks' (num_keypoints, values_per_point, ...)")
        if self.decoder != "top-down-regression" and self.landmarks is not None:
            raise ValueError(f"'landmarks' applies to decoder 'top-down-regression' only, found {self.decoder!r}")
        if top_down and self.head is not None:
            raise ValueError(f"'head' applies to decoder 'yolo-pose' only, found {self.decoder!r}")
        if not top_down:
            top_down_only = {"crop", "person_boxes", "person_category", "person_score_output"}
            defaults = type(self).model_fields
            foreign = sorted(f for f in given & top_down_only if getattr(self, f) != defaults[f].default)
            if foreign:
                raise ValueError(f"{foreign} apply to top-down decoders only (this one is 'yolo-pose')")
        count = self.model_points()
        if isinstance(self.keypoint_map, tuple) and count is not None:
            bad = [i for i in self.keypoint_map if not 0 <= i < count]
            if bad:
                raise ValueError(f"keypoint_map indices {bad} are out of range for the model's {count} points")
        if self.keypoint_map == "mediapipe-pose-to-coco" and count is not None and count < 33:
            raise ValueError(f"keypoint_map 'mediapipe-pose-to-coco' needs 33 model points, the model has {count}")
        labelled = self.labelled_points()
        if isinstance(self.sigmas, tuple):
            if any(s <= 0 for s in self.sigmas):
                raise ValueError(f"every OKS sigma must be > 0, found {list(self.sigmas)}")
            if labelled is not None and len(self.sigmas) != labelled:
                raise ValueError(f"{len(self.sigmas)} sigmas given for {labelled} keypoints (after keypoint_map)")
        elif labelled is not None and labelled != 17:
            raise ValueError(f"sigmas 'coco' are COCO's 17; give one sigma per keypoint for {labelled} keypoints")
        if self.keypoint_names is not None and labelled is not None and len(self.keypoint_names) != labelled:
            raise ValueError(f"{len(self.keypoint_names)} keypoint_names given for {labelled} keypoints")
        return self

    def model_points(self) -> int | None:
        """The model's points per person (None for heatmaps: known from the output's shape only)."""
        if self.landmarks is not None:
            return self.landmarks.num_keypoints
        if self.decoder == "yolo-pose":
            return (self.head or YoloPoseHead()).num_keypoints
        return None

    def labelled_points(self) -> int | None:
        """Points per person after ``keypoint_map`` (what OKS compares), None when only the output tells."""
        if self.keypoint_map == "mediapipe-pose-to-coco":
            return 17
        if isinstance(self.keypoint_map, tuple):
            return len(self.keypoint_map)
        return self.model_points()


class InstanceSegmentationTask(Strict):
    """Instance masks (``kind: instance-segmentation``): mask AP of both sides, mask agreement AP."""

    kind: Literal["instance-segmentation"]
    decoder: Literal["yolov8-seg"] = "yolov8-seg"
    outputs: tuple[str, ...] = Field(
        default=(), description="[head, prototypes] (default: the 3-D output and the 4-D output of the model)."
    )
    class_names: Path | tuple[str, ...] = Field(description="A file with one class name per line, or a list.")
    num_coefficients: int = Field(default=32, gt=0, description="Mask coefficients per anchor (= prototypes).")
    score_threshold: float = Field(default=0.001, ge=0, le=1, description="Evaluation score threshold.")
    iou_threshold: float = Field(default=0.7, ge=0, le=1)
    max_detections: int = Field(default=100, gt=0)
    mask_threshold: float = Field(default=0.5, gt=0, lt=1, description="Mask probability threshold.")
    class_agnostic: bool = False
    deploy_threshold: float = Field(default=0.25, ge=0, le=1, description="Agreement: reference instances above it.")

    @field_validator("outputs")
    @classmethod
    def _two_outputs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v and len(v) != 2:
            raise ValueError(f"give two outputs [head, prototypes], found {list(v)}")
        return v

    def names(self) -> list[str]:
        if isinstance(self.class_names, Path):
            return [n.strip() for n in self.class_names.read_text(encoding="utf-8").splitlines() if n.strip()]
        return list(self.class_names)


def _task_kind(value: Any) -> str | None:
    """The task's ``kind``; an entry without one is a detection task (models.yaml files written before tasks)."""
    if isinstance(value, dict):
        kind = value.get("kind", "detection")
        return kind if isinstance(kind, str) else None
    return getattr(value, "kind", None)


TaskConfig = Annotated[
    Annotated[TaskSpec, Tag("detection")]
    # issue 14 tasks
    | Annotated[SegmentationTask, Tag("segmentation")]
    | Annotated[ClassificationTask, Tag("classification")]
    # issue 15 tasks
    | Annotated[KeypointsTask, Tag("keypoints")]
    | Annotated[InstanceSegmentationTask, Tag("instance-segmentation")],
    Discriminator(_task_kind),
]
"""The ``task`` section: a tagged union on ``kind`` (default ``detection``); a task kind adds its spec here and its
implementation to :mod:`qc.tasks`."""


class SpeedSettings(Strict):
    rounds: int = Field(default=30, gt=0, description="Timed runs (pytest-benchmark rounds).")
    warmup: int = Field(default=3, ge=0)
    profile_runs: int = Field(default=10, gt=0, description="Profiled runs for per-layer time (separate session).")
    fps_source: Literal["host-wall", "htp-cycles-estimate", "device"] | None = Field(
        default=None,
        description="Which throughput figure min_fps/min_fps_ratio gate: host-wall (wall time in this process), "
        "htp-cycles-estimate (HTP cycles / target.htp_clock_mhz), device (timed on the device). Default: the "
        "target's own figure; a simulator target (qnn-htp) has none and needs it set.",
    )


class LintSettings(Strict):
    max_severity: Literal["info", "warning", "error"] = Field(
        default="warning", description="Findings above this severity fail the lint gate."
    )
    allow: tuple[str, ...] = Field(default=(), description="Rule ids accepted for this model whatever their severity.")


class BaselineTolerances(Strict):
    """How much worse than the baseline run a metric may get (``--qc-baseline``)."""

    target_ap: float = Field(default=0.01, ge=0, le=1, description="Absolute AP points.")
    worst_layer_cosine: float = Field(default=0.005, ge=0, le=2, description="Absolute cosine.")
    fps: float = Field(default=0.2, ge=0, le=1, description="Relative: 0.2 = 20% slower than the baseline.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Absolute tolerance per headline metric of the entry's task (e.g. target_miou: 0.01); "
        "overrides the task's default and gates a headline that has none.",
    )

    @field_validator("metrics")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if not x >= 0}
        if bad:
            raise ValueError(f"tolerances must be >= 0, found {bad}")
        return v

    def table(self, headlines: Iterable[Headline] = ()) -> dict[str, tuple[float, bool]]:
        """Metric -> (tolerance, relative?) for the ``baseline`` gate: worst-layer cosine and FPS, every headline
        of the entry's task with a default tolerance (``target_ap``: this class's field), then ``metrics``."""
        out: dict[str, tuple[float, bool]] = {}
        for h in headlines:
            if h.name == "target_ap":
                out[h.name] = (self.target_ap, False)
            elif h.baseline_tolerance is not None:
                out[h.name] = (h.baseline_tolerance, False)
        out["worst_layer_cosine"] = (self.worst_layer_cosine, False)
        out["target_fps"] = (self.fps, True)
        for name, tolerance in self.metrics.items():
            out[name] = (tolerance, False)
        return out


class DiagnoseSettings(Strict):
    """The opt-in diagnosis (``-m diagnose`` / ``qc diagnose``): which layers cause the loss, and what to keep."""

    top_k: int = Field(default=10, gt=0, description="Layers with the worst local error to test for sensitivity.")
    quick_images: int = Field(default=2, gt=0, description="Images for the cheap first sensitivity pass.")
    shortlist: int = Field(default=5, gt=0, description="Layers re-measured with the task metric on all images.")
    metric: str = Field(
        default="auto",
        description="auto | output_sqnr | one of the task's diagnosis metrics (detection: ap, agreement_ap; "
        "segmentation: miou, mask_agreement; classification: top1, top1_agreement).",
    )
    max_float_layers: int = Field(default=10, ge=0, description="At most this many layers kept in higher precision.")
    advice_precision: Literal["float", "int16"] = "float"
    advice_gates: tuple[str, ...] | None = Field(
        default=None,
        description="Gates the advice must pass; default: the accuracy gates with a task, else output_cosine/sqnr.",
    )

    @field_validator("advice_gates")
    @classmethod
    def _known_advice_gates(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            _check_gate_names(v)
        return v


class ThresholdValues(Strict):
    """A per-tensor override: only the fields given replace the defaults."""

    layer_cosine: float | None = Field(default=None, ge=-1, le=1)
    output_cosine: float | None = Field(default=None, ge=-1, le=1)
    output_sqnr_db: float | None = Field(default=None, ge=SQNR_DB_MIN, le=SQNR_DB_MAX)


@dataclass(frozen=True)
class TensorThresholds:
    """The tolerances that apply to one tensor, every one resolved (defaults and the first matching override)."""

    layer_cosine: float
    output_cosine: float
    output_sqnr_db: float


class Thresholds(Strict):
    """A default for every tensor plus per-name overrides: an exact name or a glob; the first match in file order wins.

    Output slices are named ``tensor[slice]`` (an exact key matches them; in a glob, ``[`` starts a character class).
    """

    layer_cosine: float = Field(default=0.98, ge=-1, le=1)
    output_cosine: float = Field(default=0.99, ge=-1, le=1)
    output_sqnr_db: float = Field(default=20.0, ge=SQNR_DB_MIN, le=SQNR_DB_MAX)
    max_map_drop: float = Field(default=0.04, ge=0, le=1, description="AP@[.5:.95] reference minus target, at most.")
    max_map50_drop: float = Field(default=0.04, ge=0, le=1)
    min_agreement_ap: float = Field(
        default=0.87,  # fitted by `qc calibrate` (docs/calibration.md): no over-budget variant passes at 0.87
        ge=0,
        le=1,
        description="Target AP against reference detections (default calibrated to max_map_drop 0.04).",
    )
    min_fps: float | None = Field(default=None, gt=0, description="Target throughput (1 / mean latency), at least.")
    min_fps_ratio: float | None = Field(default=None, gt=0, description="Target FPS / reference FPS, at least.")
    baseline: BaselineTolerances = BaselineTolerances()
    overrides: dict[str, ThresholdValues] = Field(default_factory=dict)
    # issue 14 tasks
    max_miou_drop: float = Field(default=0.02, ge=0, le=1, description="Segmentation: reference mIoU minus target's.")
    min_mask_agreement: float = Field(
        default=0.9, ge=0, le=1, description="Segmentation: target masks vs the reference's (foreground IoU / mIoU)."
    )
    max_top1_drop: float = Field(default=0.01, ge=0, le=1, description="Classification: top-1 accuracy drop.")
    min_top1_agreement: float = Field(
        default=0.95, ge=0, le=1, description="Classification: images where the target's top-1 is the reference's."
    )
    # issue 15 tasks
    max_oks_ap_drop: float = Field(default=0.05, ge=0, le=1, description="OKS AP reference minus target, at most.")
    min_keypoint_agreement: float = Field(
        default=0.9, ge=0, le=1, description="Mean OKS of the target's points against the reference's, at least."
    )
    max_mask_ap_drop: float = Field(default=0.05, ge=0, le=1, description="Mask AP reference minus target, at most.")
    min_instance_mask_agreement: float = Field(
        default=0.8, ge=0, le=1, description="Mask AP of the target against the reference's instances, at least."
    )

    def for_tensor(self, name: str) -> TensorThresholds:
        """The thresholds that apply to ``name``: the one place tolerances are resolved (an override of 0.0 is 0.0)."""
        resolved = {
            "layer_cosine": self.layer_cosine,
            "output_cosine": self.output_cosine,
            "output_sqnr_db": self.output_sqnr_db,
        }
        for pattern, values in self.overrides.items():
            if pattern == name or fnmatch.fnmatchcase(name, pattern):
                for key, value in values.model_dump(exclude_none=True).items():
                    resolved[key] = float(value)
                break
        return TensorThresholds(**resolved)


Expectation = Literal["pass", "fail"]


def _check_gate_names(names: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(GATE_NAMES))
    if unknown:
        raise ValueError(f"unknown gate(s) {unknown}; gates are {list(GATE_NAMES)}")


class ModelSpec(Strict):
    name: str
    reference: Path
    target: Target
    preprocess: Preprocess = Preprocess()
    eval_data: ImageData
    calibration: ImageData | None = None
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    task: TaskConfig | None = None
    speed: SpeedSettings = SpeedSettings()
    lint: LintSettings = LintSettings()
    diagnose: DiagnoseSettings = DiagnoseSettings()
    thresholds: Thresholds = Thresholds()
    expect: Expectation | dict[str, Expectation] = Field(
        default="pass", description="'fail' for a known-bad variant (its gates become strict xfails), or per gate."
    )
    gates: tuple[str, ...] | None = Field(default=None, description="Gates to run; default: all that apply.")
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_is_test_id(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"must match {NAME_RE.pattern} (it becomes the pytest id), found {v!r}")
        return v

    @field_validator("expect")
    @classmethod
    def _known_gates(cls, v: Expectation | dict[str, Expectation]) -> Expectation | dict[str, Expectation]:
        if isinstance(v, dict):
            _check_gate_names(v)
        return v

    @field_validator("gates")
    @classmethod
    def _known_gate_list(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            _check_gate_names(v)
        return v

    @model_validator(mode="after")
    def _calibration_needed(self) -> ModelSpec:
        if isinstance(self.target, OrtInt8Target) and self.calibration is None:
            raise ValueError("target kind 'ort-int8' needs a 'calibration' image set")
        if isinstance(self.target, QnnHtpTarget) and self.target.precision == "quantized" and self.calibration is None:
            raise ValueError("target kind 'qnn-htp' (precision quantized) needs a 'calibration' image set")
        if isinstance(self.target, QnnDeviceTarget) and self.target.context_binary is None and self.calibration is None:
            raise ValueError(
                "target kind 'qnn' without target.context_binary exports one from the reference: it needs a "
                "'calibration' image set"
            )
        self._task_metric_names()
        if self.gates is not None:
            kind = self.task.kind if self.task is not None else None
            foreign = [g for g in self.gates if gate_info(g).task not in (None, kind)]
            if foreign:
                owners = sorted({str(gate_info(g).task) for g in foreign})
                have = f"a {kind!r} task" if kind else "no 'task' section"
                raise ValueError(f"gates {foreign} need a task of kind {owners} (this entry has {have})")
        return self

    def _task_metric_names(self) -> None:
        """``diagnose.metric`` and ``thresholds.baseline.metrics`` name metrics of the entry's task (its class is
        imported only when either is set)."""
        metric = self.diagnose.metric
        tolerated = self.thresholds.baseline.metrics
        if metric in ("auto", "output_sqnr") and not tolerated:
            return
        from qc.tasks import task_class

        cls = task_class(self.task.kind) if self.task is not None else None
        if metric not in ("auto", "output_sqnr"):
            allowed = ["auto", "output_sqnr", *(cls.diagnosis_metrics if cls is not None else ())]
            if metric not in allowed:
                raise ValueError(
                    f"diagnose.metric: {metric!r} is not a metric of this entry's task; expected {allowed}"
                )
        known = {"worst_layer_cosine", *(h.name for h in (cls.headlines if cls is not None else ()))}
        unknown = sorted(set(tolerated) - known)
        if unknown:
            raise ValueError(
                f"thresholds.baseline.metrics: {unknown} are not headline metrics of this entry's task; "
                f"expected some of {sorted(known)}"
            )

    def applies(self, gate: str) -> bool:
        """Whether ``gate`` runs for this model: listed in ``gates`` (default all) and computable at all.

        A task's gates (``needs: accuracy``) apply only to an entry whose ``task`` is of that kind.
        """
        if self.gates is not None and gate not in self.gates:
            return False
        owner = gate_info(gate).task
        return owner is None or (self.task is not None and self.task.kind == owner)

    def expected(self, gate: str) -> Expectation:
        if isinstance(self.expect, str):
            return self.expect
        return self.expect.get(gate, "pass")


class ModelsFile(Strict):
    devices: list[DeviceSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(min_length=1)

    def cross_entry_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What no single entry can see (unique device and model names, known device names), each at the place
        in the file it concerns (``load_project`` turns the paths into ``models.yaml:LINE:COL``)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names = [d.name for d in self.devices]
        first_device: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first_device:
                problems.append(
                    (
                        ("devices", i, "name"),
                        f"device name {name!r} is used twice (first at devices[{first_device[name]}])",
                    )
                )
            first_device.setdefault(name, i)
        first_model: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in first_model:
                problems.append(
                    (
                        ("models", i, "name"),
                        f"model name {m.name!r} is used twice (first at models[{first_model[m.name]}]); names are "
                        "test ids and must be unique",
                    )
                )
            first_model.setdefault(m.name, i)
            if isinstance(m.target, SnpeTarget | QnnDeviceTarget):
                for j, device in enumerate(m.target.devices):
                    if device not in first_device:
                        problems.append(
                            (
                                ("models", i, "target", "devices", j),
                                f"model {m.name!r}: unknown device {device!r}; devices are {names}",
                            )
                        )
        return problems


_VAR_RE = re.compile(r"\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_cache_dir() -> Path:
    env = os.environ.get("QC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qc"


def assets_dir() -> Path:
    env = os.environ.get("QC_ASSETS")
    return Path(env).expanduser() if env else default_cache_dir() / "assets"


def _expand(value: str, variables: dict[str, str]) -> str:
    """Replace every ``${NAME}`` by its value; ``$${`` stands for a literal ``${`` (e.g. a variable of the device's
    shell in ``setup``). An unset variable is an error, whatever the field."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        key = m.group(1)
        if key in variables:
            return variables[key]
        if key in os.environ:
            return os.environ[key]
        raise ValueError(f"unknown variable ${{{key}}} (set it in the environment, or write $${{{key}}} for a literal)")

    return _VAR_RE.sub(sub, value)


_PATH_KEYS = {
    "reference",
    "model",
    "annotations",
    "images",
    "folder",
    "class_names",
    "dlc",
    "context_binary",
    "source_model",
    "key_file",
    "known_hosts",
    "dotenv",
    # issue 14 tasks
    "csv",
}


def _resolve_paths(
    data: Any,
    base: Path,
    variables: dict[str, str],
    loc: tuple[str | int, ...],
    errors: list[tuple[tuple[str | int, ...], str]],
) -> Any:
    """One rule for every string value, whatever the field: ``${VAR}`` is expanded (an unset one is an error at
    its position); path fields are then made absolute against the models.yaml folder. Mapping keys (output names,
    override globs) are names, not values: they are left as written."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in _PATH_KEYS and isinstance(v, str):
                try:
                    p = Path(_expand(v, variables)).expanduser()
                except ValueError as exc:
                    errors.append(((*loc, k), str(exc)))
                    out[k] = v
                    continue
                out[k] = str(p if p.is_absolute() else (base / p).resolve())
            else:
                out[k] = _resolve_paths(v, base, variables, (*loc, k), errors)
        return out
    if isinstance(data, list):
        return [_resolve_paths(v, base, variables, (*loc, i), errors) for i, v in enumerate(data)]
    if isinstance(data, str):
        try:
            return _expand(data, variables)
        except ValueError as exc:
            errors.append((loc, str(exc)))
            return data
    return data


def _missing_files(spec: ModelSpec) -> list[tuple[tuple[str | int, ...], str]]:
    checks: list[tuple[tuple[str | int, ...], Path, bool]] = [(("reference",), spec.reference, False)]
    if isinstance(spec.target, OnnxTarget):
        checks.append((("target", "model"), spec.target.model, False))
    if isinstance(spec.target, SnpeTarget):
        checks.append((("target", "dlc"), spec.target.dlc, False))
    if isinstance(spec.target, QnnDeviceTarget):
        for key, value in (("context_binary", spec.target.context_binary), ("source_model", spec.target.source_model)):
            if value is not None:
                checks.append((("target", key), value, False))
    for key, data in (("eval_data", spec.eval_data), ("calibration", spec.calibration)):
        if data is None:
            continue
        if data.coco is not None:
            checks.append(((key, "coco", "annotations"), data.coco.annotations, False))
            checks.append(((key, "coco", "images"), data.coco.images, True))
        elif data.folder is not None:
            checks.append(((key, "folder"), data.folder, True))
    class_names = getattr(spec.task, "class_names", None)  # a task kind without class names has none to check
    if isinstance(class_names, Path):
        checks.append((("task", "class_names"), class_names, False))
    if isinstance(spec.task, SegmentationTask) and isinstance(spec.task.ground_truth, CocoMaskSource):
        checks.append((("task", "ground_truth", "annotations"), spec.task.ground_truth.annotations, False))
    if isinstance(spec.task, SegmentationTask) and isinstance(spec.task.ground_truth, FolderMaskSource):
        checks.append((("task", "ground_truth", "folder"), spec.task.ground_truth.folder, True))
    if isinstance(spec.task, ClassificationTask) and isinstance(spec.task.labels, CsvLabels):
        checks.append((("task", "labels", "csv"), spec.task.labels.csv, False))
    out = []
    for loc, path, is_dir in checks:
        if is_dir and not path.is_dir():
            out.append((loc, f"folder not found: {path}"))
        elif not is_dir and not path.is_file():
            out.append((loc, f"file not found: {path}"))
    return out


def _invalid_models(spec: ModelSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """ONNX files of an entry that do not load or fail ``onnx.checker`` (a text file, empty, truncated)."""
    import onnx

    checks: list[tuple[tuple[str | int, ...], Path]] = [(("reference",), spec.reference)]
    if isinstance(spec.target, OnnxTarget):
        checks.append((("target", "model"), spec.target.model))
    out = []
    for loc, path in checks:
        if not path.is_file():
            continue  # reported as missing
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # protobuf, checker and OS errors alike mean "not a usable model"
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            size = path.stat().st_size
            out.append((loc, f"not a valid ONNX model ({size} bytes): {path}: {detail}"))
    return out


def load_models(path: Path, *, check_files: bool = True) -> list[ModelSpec]:
    """Load and validate a models.yaml; raise one ConfigError listing every problem as ``file:LINE:COL``."""
    return load_project(path, check_files=check_files).models


def load_project(path: Path, *, check_files: bool = True, check_models: bool = False) -> ModelsFile:
    """Like :func:`load_models`, with the ``devices`` list too.

    ``check_models`` also loads every referenced ONNX file and runs ``onnx.checker`` on it (``qc validate``).
    """
    path = Path(path)
    data, positions = load_yaml_with_positions(path)
    problems: list[tuple[int, int, str]] = []

    def add(loc: Sequence[str | int], msg: str, *, at_key: bool = False) -> None:
        line, col = positions.locate(loc, at_key=at_key)
        field = dotted(loc) or "(file)"
        problems.append((line, col, f"{path}:{line}:{col}: {field}: {msg}"))

    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: (file): expected a mapping with a 'models' list, found {type(data).__name__}.")
    path_errors: list[tuple[tuple[str | int, ...], str]] = []
    resolved = _resolve_paths(data, path.parent.resolve(), {"QC_ASSETS": str(assets_dir())}, (), path_errors)
    for loc, msg in path_errors:
        add(loc, msg)
    project: ModelsFile | None = None
    specs: list[ModelSpec] = []
    try:
        project = ModelsFile.model_validate(resolved)
        specs = project.models
        for loc, msg in project.cross_entry_problems():
            add(loc, msg)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required field is missing"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field (allowed: {_allowed(loc)})"
            elif err["type"] == "union_tag_invalid":
                what = "task" if _strip_tags(loc)[-1:] == ("task",) else "target"
                expected = err.get("ctx", {}).get("expected_tags", "")
                msg = f"unknown {what} kind {err['input'].get('kind')!r}; expected one of {expected}"
            elif err["type"] == "union_tag_not_found":
                msg = f"missing 'kind'; expected one of {err.get('ctx', {}).get('expected_tags', '')}"
            elif err["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
            elif "input" in err and err["type"] not in ("model_type", "dict_type"):
                msg = f"{msg}, found {err['input']!r}"
            add(_strip_tags(loc), msg, at_key=err["type"] == "extra_forbidden")
    if check_files and specs:
        for i, spec in enumerate(specs):
            for loc, msg in _missing_files(spec):
                add(("models", i, *loc), msg)
            if check_models:
                for loc, msg in _invalid_models(spec):
                    add(("models", i, *loc), msg)
    if problems:
        problems.sort()
        raise ConfigError("\n".join(p[2] for p in problems))
    assert project is not None
    return project


_TAGS: dict[str, type[BaseModel]] = {
    "ort-int8": OrtInt8Target,
    "onnx": OnnxTarget,
    "snpe": SnpeTarget,
    "qnn": QnnDeviceTarget,
    "detection": TaskSpec,
    # issue 14 tasks
    "segmentation": SegmentationTask,
    "classification": ClassificationTask,
    "keypoints": KeypointsTask,
    "instance-segmentation": InstanceSegmentationTask,
}


def _strip_tags(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop the parts pydantic adds for unions (tags, 'literal[...]', 'dict[...]') so the path matches the file."""
    return tuple(p for p in loc if p not in _TAGS and not (isinstance(p, str) and p.endswith("]")))


def _allowed(loc: tuple[Any, ...]) -> str:
    """The field names allowed at the mapping that holds the unknown key at ``loc``."""
    model: type[BaseModel] | None = ModelsFile
    skip_key = False
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        if skip_key:  # a free-form dict key such as an override glob or an output name
            skip_key = False
            continue
        if part in _TAGS:
            model = _TAGS[part]
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return "see the README"
        skip_key = getattr(info.annotation, "__origin__", None) is dict
        model = _model_of(info.annotation)
    return ", ".join(model.model_fields) if model is not None else "see the README"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
