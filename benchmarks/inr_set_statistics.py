"""How an INR set's weights compare with the DWSNets MNIST INR set's: per-layer statistics.

The DWSNets set itself is not reachable here, but its per-layer means and standard deviations of
the weights and biases are published (the neural-graphs repository's
``experiments/inr_classification/configs/data/mnist.yaml``, ``stats``, computed on its training
split); this script computes the same figures on the train split of an INR set of this package
and puts them side by side, with the PSNR of the fits.

Run: ``python benchmarks/inr_set_statistics.py --folder ~/.cache/l2o_graphs/data/inrs/mnist-dwsnets-10k``.
Writes ``benchmarks/results/inr_set_statistics_<tag or folder name>.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import machine, write_result

from l2o_graphs.inr import inr_set_spec, load_inr_set
from l2o_graphs.inr.siren import linear_names

# published per-layer statistics of the DWSNets MNIST INR set (train split): layer 1, 2, 3
DWSNETS_MNIST = {"weights_mean": [-4.215954686515033e-05, -7.55547659991862e-07, 7.886120874900371e-05],
                 "weights_std": [0.06281130015850067, 0.018268151208758354, 0.11791174858808517],
                 "biases_mean": [5.419965418695938e-06, 3.7173406326473923e-06, -0.01239530649036169],
                 "biases_std": [0.021334609016776085, 0.011004417203366756, 0.09989194571971893]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--tag", default="", help="suffix of the result name (default: the folder's name)")
    args = parser.parse_args()
    spec = inr_set_spec(args.folder)
    inrs = load_inr_set(args.folder, args.split)
    ours = {"weights_mean": [], "weights_std": [], "biases_mean": [], "biases_std": []}
    for weight, bias in linear_names():
        for kind, name in (("weights", weight), ("biases", bias)):
            values = inrs.params[name].double()
            ours[f"{kind}_mean"].append(float(values.mean()))
            ours[f"{kind}_std"].append(float(values.std()))
    ratio = {key: [o / d for o, d in zip(ours[key], DWSNETS_MNIST[key])] for key in ours if key.endswith("std")}
    payload = {"benchmark": "inr_set_statistics",
               "command": "python benchmarks/inr_set_statistics.py " + " ".join(sys.argv[1:]),
               "machine": machine(), "set": spec.to_config(), "protocol": spec.protocol, "split": args.split,
               "count": len(inrs.label),
               "psnr": {"mean": float(inrs.psnr.mean()), "min": float(inrs.psnr.min()), "max": float(inrs.psnr.max())},
               "ours": ours, "dwsnets_mnist": DWSNETS_MNIST,
               "dwsnets_source": "mkofinas/neural-graphs experiments/inr_classification/configs/data/mnist.yaml",
               "std_ratio_ours_to_dwsnets": ratio}
    print(f"wrote {write_result(f'inr_set_statistics_{args.tag or args.folder.name}.json', payload)}")
    for key in ("weights_std", "biases_std"):
        print(f"{key:<12} ours " + " ".join(f"{v:.4f}" for v in ours[key]) + "   DWSNets "
              + " ".join(f"{v:.4f}" for v in DWSNETS_MNIST[key]))
    print(f"PSNR mean {payload['psnr']['mean']:.1f} dB (min {payload['psnr']['min']:.1f})")


if __name__ == "__main__":
    main()
