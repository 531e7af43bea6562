"""What MOOD's float16 output costs: pooled voxel AP of raw scores vs the written outputs, and how many voxels the
tie breaking moves, on labelled volumes laid out one case per folder (as ../shared/data/brats2015).

Each case is scored slice by slice by a method that needs no training (``--method``, default brightness), mapped
by ``pixel_scores`` at the given squashing, read back as the evaluator reads it (``pixel_prediction``) and pooled.

    python benchmarks/bench_mood_mapping.py --data ../shared/data/brats2015              # about 1 minute
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel
import numpy as np

from picard_ad.jobs.mood import MoodSettings, codes_to_scores, float16_floor_codes, pixel_scores, score_volume, squash
from picard_ad.methods import create_method
from picard_ad.metrics.mood import pixel_prediction
from picard_ad.metrics.ranking import average_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of case folders")
    parser.add_argument("--image", default="Flair_subtrMeanDivStd.nii.gz", help="volume file of each case")
    parser.add_argument("--labels", default="OTMultiClass.nii.gz", help="label volume of each case (> 0: anomaly)")
    parser.add_argument("--method", default="brightness", help="a method that needs no training")
    parser.add_argument("--squashing", type=float, nargs=2, action="append", metavar=("CENTER", "SCALE"),
                        help="center and scale of g (repeatable) [0.5 0.1 and 1.0 0.1]")  # fmt: skip
    args = parser.parse_args()
    method = create_method(args.method)
    cases = sorted(folder for folder in args.data.iterdir() if (folder / args.image).is_file())
    raw, labels = [], []
    for case in cases:
        raw.append(score_volume(case / args.image, lambda pixels: method.heatmap(pixels).array).scores)
        labels.append(np.asarray(nibabel.load(case / args.labels).dataobj) > 0)
    is_anomalous = np.concatenate([label.ravel() for label in labels])
    pooled_raw = np.concatenate([scores.ravel() for scores in raw])
    print(f"{len(cases)} cases, {pooled_raw.size} voxels, {np.unique(pooled_raw).size} distinct raw scores; "
          f"pooled AP of the raw scores {average_precision(is_anomalous, pooled_raw):.5f}")
    for center, scale in args.squashing or [(0.5, 0.1), (1.0, 0.1)]:
        settings = MoodSettings(center=center, scale=scale)
        written = [pixel_prediction(pixel_scores(scores, settings), scores.shape, case.name)
                   for scores, case in zip(raw, cases)]  # fmt: skip
        plain = [codes_to_scores(float16_floor_codes(squash(scores, settings))) for scores in raw]
        moved = sum(int(np.count_nonzero(w != p)) for w, p in zip(written, plain))
        pooled = np.concatenate([w.ravel() for w in written])
        pooled_plain = np.concatenate([p.ravel() for p in plain])
        print(f"center {center} scale {scale}: AP written {average_precision(is_anomalous, pooled):.5f}, "
              f"g rounded down without tie breaking {average_precision(is_anomalous, pooled_plain):.5f}; "
              f"{np.unique(pooled).size} distinct values written; tie breaking moved {moved} voxels")


if __name__ == "__main__":
    main()
