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

from ovseg.datasets import read_dataset
from ovseg.evaluation import describe_proposals, evaluate, write_reports
from ovseg.stage_runner import run_job


def main(settings, params: dict) -> str:
    dataset = Path(params.get("eval_dataset") or "data/eval")
    only = bool(params.get("eval_proposals_only"))
    metrics, pairs, regions = evaluate(settings, read_dataset(dataset), Path("cache/eval"), proposals_only=only)
    write_reports(metrics, pairs, regions, Path("metrics"), f"{dataset} — preset {settings.preset}")
    lines = [describe_proposals(metrics["proposals"])]
    if pairs:
        lines.append(
            f"evaluate: mIoU {metrics['miou']:.4f}, top-1 precision {metrics['top1_precision']:.4f}, "
            f"recall {metrics['top1_recall']:.4f} over {metrics['pairs']} pairs"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    run_job("evaluate", main)
