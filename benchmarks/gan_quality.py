"""Class consistency and Fréchet distance of a DiStyleGAN checkpoint folder under a CIFAR-10 classifier.

    .venv/bin/python benchmarks/gan_quality.py checkpoints/distylegan-cifar10 \
        --weights ../shared/weights/cifar10_resnet20-4118986f.pt --train ../shared/data/cifar10-lossless/train
"""

from __future__ import annotations

import argparse
import json

from synthcal.calibration.quality import generator_quality
from synthcal.data import read_image_folder
from synthcal.io import write_json
from synthcal.models.zoo import load_zoo_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generator", help="folder with generator.pt + config.json")
    parser.add_argument("--judge", default="resnet20")
    parser.add_argument("--weights", required=True, help="the judge's state_dict")
    parser.add_argument("--train", required=True, help="ImageFolder tree of real training images (reference)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", help="also write the figures to this JSON file (e.g. the checkpoint's quality.json)")
    args = parser.parse_args()
    reference = read_image_folder(args.train, show_progress=False)
    judge = load_zoo_classifier(args.judge, args.weights)
    stats = generator_quality(args.judge, judge, args.generator, reference, args.per_class, args.seed)
    figures = {key: stats[key] for key in ("class_consistency", "frechet_distance", "mean_max_softmax",
                                           "histogram_entropy", "count", "reference_count")}
    figures.update(judge=args.judge, per_class=args.per_class, seed=args.seed, reference=args.train)
    print(json.dumps(figures, indent=2))
    if args.out:
        write_json(args.out, figures)


if __name__ == "__main__":
    main()
