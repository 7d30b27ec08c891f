"""DVC stage `evaluate`: mask-candidate quality, mIoU and top-1 precision/recall on a labelled set.

First the candidates alone (oracle IoU, union oracle, recall at 0.5, candidates and
seconds per image: no CLIP needed; params `eval_proposals_only: true` stops there),
then each labelled object segmented with its class name as the prompt, using the same
preset and stage settings as the main pipeline (so `dvc exp run --set-param ...`
ablations apply). With `eval_protocol: semantic`, the zero-shot papers' protocol instead
(every pixel one class of `eval_classes`, mIoU the mmseg way; docs/evaluation.md, "Compare with the
papers"). Reads: the dataset folder (params `eval_dataset`). Writes: cache/eval
(masks, features and scores of the eval images), metrics/metrics.json, metrics/*.tsv
and metrics/*.png.
"""

from pathlib import Path

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_job
from ovseg.evaluation.protocols import describe, evaluate_dataset, options_from_params


def main(settings, params: dict) -> str:
    metrics = evaluate_dataset(settings, options_from_params(params), Path("cache/eval"), Path("metrics"))
    return "\n".join(describe(metrics))


if __name__ == "__main__":
    run_job("evaluate", main)
