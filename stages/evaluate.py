"""DVC stage `evaluate`: mIoU and top-1 precision/recall on a labelled set (params `eval_dataset`).

Each labelled object is segmented with its class name as the prompt, using the same
preset and stage settings as the main pipeline (so `dvc exp run --set-param ...`
ablations apply). Reads: the dataset folder. Writes: cache/eval (masks, features and
scores of the eval images), metrics/metrics.json, metrics/per_class.tsv,
metrics/per_pair.tsv, metrics/per_class_iou.png.
"""

from pathlib import Path

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.evaluation import evaluate, read_dataset, write_reports
from ovseg.pipeline import StageReport
from ovseg.stage_runner import run_stage


def main(settings, paths) -> StageReport:
    dataset = Path(settings.raw.get("eval_dataset") or "data/eval")
    metrics, pairs = evaluate(settings, read_dataset(dataset), paths.cache / "eval")
    write_reports(metrics, pairs, Path("metrics"), f"{dataset} — preset {settings.preset}")
    print(
        f"evaluate: mIoU {metrics['miou']:.4f}, top-1 precision {metrics['top1_precision']:.4f}, "
        f"recall {metrics['top1_recall']:.4f} over {metrics['pairs']} pairs"
    )
    return StageReport("evaluate", computed=[f"{p.image}:{p.prompt}" for p in pairs])


if __name__ == "__main__":
    run_stage("evaluate", main)
