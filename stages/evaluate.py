"""DVC stage `evaluate`: mask-candidate quality, mIoU and top-1 precision/recall on a labelled set.

First the candidates alone (oracle IoU, union oracle, recall at 0.5, candidates and
seconds per image: no CLIP needed; params `eval_proposals_only: true` stops there),
then each labelled object segmented with its class name as the prompt, using the same
preset and stage settings as the main pipeline (so `dvc exp run --set-param ...`
ablations apply). Reads: the dataset folder (params `eval_dataset`). Writes: cache/eval
(masks, features and scores of the eval images), metrics/metrics.json, metrics/*.tsv
and metrics/*.png.
"""

from pathlib import Path

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.evaluation import describe_proposals, evaluate, read_dataset, write_reports
from ovseg.pipeline import StageReport
from ovseg.stage_runner import run_stage


def main(settings, paths) -> StageReport:
    dataset = Path(settings.raw.get("eval_dataset") or "data/eval")
    only = bool(settings.raw.get("eval_proposals_only"))
    metrics, pairs, regions = evaluate(settings, read_dataset(dataset), paths.cache / "eval", proposals_only=only)
    write_reports(metrics, pairs, regions, Path("metrics"), f"{dataset} — preset {settings.preset}")
    print(describe_proposals(metrics["proposals"]))
    if pairs:
        print(
            f"evaluate: mIoU {metrics['miou']:.4f}, top-1 precision {metrics['top1_precision']:.4f}, "
            f"recall {metrics['top1_recall']:.4f} over {metrics['pairs']} pairs"
        )
    return StageReport("evaluate", computed=[f"{p.image}:{p.prompt}" for p in pairs] or [r.image for r in regions])


if __name__ == "__main__":
    run_stage("evaluate", main)
