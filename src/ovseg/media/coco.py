"""One COCO-format file for a whole run: what SAM's ``amg.py`` and Grounded-SAM users feed other tools.

Built from the per-image ``selection.json`` records: one COCO image per photo (its size),
the prompt as the single category, and one annotation per selected mask with its RLE
segmentation, XYWH box, area and score. ``pycocotools.coco.COCO`` loads it and
``annToMask`` gives the masks back.
"""

from __future__ import annotations

from typing import Any

from ovseg.storage.locations import image_name


def file_name(image: str, root: str | None = None) -> str:
    """A photo's COCO ``file_name``: its path under the run's image folder ``root``, else its file name."""
    prefix = f"{str(root).rstrip('/')}/" if root else None
    if prefix and str(image).startswith(prefix):
        return str(image)[len(prefix) :]
    return image_name(image)


def coco_annotations(
    records: list[dict[str, Any]],
    prompt: str,
    description: str = "ovseg",
    root: str | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """A COCO dataset dict from selection records (``selection.json`` contents), images in the given order.

    ``root``: the run's image folder; files in its sub-folders are named by their path under it.
    ``classes``: a run with several classes: one category each (id = its place in the list, from
    1; its first synonym as the name, all of them as ``synonyms``), and each annotation names its
    mask's ``category``. Without: the prompt is the one category.
    """
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        width, height = record["image_size"]
        name = file_name(record["image"], root)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for picked in record["selected"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": picked.get("category") or 1,
                    "segmentation": picked["rle"],
                    "area": picked["area"],
                    "bbox": picked["bbox_xywh"],
                    "score": picked["score"],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": description, "prompt": prompt},
        "images": images,
        "categories": categories(prompt, classes),
        "annotations": annotations,
    }


def categories(prompt: str, classes: list[str] | None) -> list[dict[str, Any]]:
    """COCO's categories: the prompt alone, or each class with its synonyms ("sofa|couch" is "sofa")."""
    if not classes:
        return [{"id": 1, "name": prompt, "supercategory": "prompt"}]
    result = []
    for index, name in enumerate(classes, start=1):
        synonyms = [part.strip() for part in name.split("|") if part.strip()]
        result.append({"id": index, "name": synonyms[0], "supercategory": "class", "synonyms": synonyms})
    return result
