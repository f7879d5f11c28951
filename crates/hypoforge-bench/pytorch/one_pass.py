"""The one-pass training protocol of hypoforge's benchmark, in PyTorch eager mode.

Run by `cargo xtask bench` when torch imports; by hand:

    python3 crates/hypoforge-bench/pytorch/one_pass.py --data datasets --seeds 5 --rounds 7

Protocol (as hypoforge-eval's `model::train`): 80/20 random split per seed, inputs standardized
with the training split's mean and population standard deviation (a constant column is only
centred), an MLP with the activation after every hidden layer and PyTorch's default Linear
initialization, one epoch of Adam(lr 1e-3) on shuffled batches of 64 with the mean softmax
cross-entropy, then the mean cross-entropy over the validation split. One thread.

Prints one JSON object: per (dataset, activation) the validation loss of each seed and the
fastest wall time of one trial over the rounds (training and validation, data already in
memory), as hypoforge's benchmark reports its own.
"""

import argparse
import csv
import gzip
import json
import struct
import time

import numpy as np
import torch

NETWORKS = {"digits": [128, 128], "mnist10k": [256, 256]}
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU}  # GELU: exact (erf) form


def load_digits(data_dir):
    with open(f"{data_dir}/digits.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    x = np.array([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32)
    y = np.array([int(r[-1]) for r in rows], dtype=np.int64)
    return x, y


def load_mnist10k(data_dir):
    with gzip.open(f"{data_dir}/mnist10k-images-idx3-ubyte.gz") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        x = np.frombuffer(f.read(), dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)
    with gzip.open(f"{data_dir}/mnist10k-labels-idx1-ubyte.gz") as f:
        f.read(8)
        y = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)
    return x, y


def split_standardize(x, y, seed):
    order = np.random.RandomState(seed).permutation(len(x))
    n_valid = int(round(len(x) * 0.2))
    valid, train = order[:n_valid], order[n_valid:]
    xt, xv = x[train].astype(np.float64), x[valid].astype(np.float64)
    mean = xt.mean(axis=0)
    std = xt.std(axis=0)
    scale = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
    xt = ((xt - mean) * scale).astype(np.float32)
    xv = ((xv - mean) * scale).astype(np.float32)
    return (torch.from_numpy(xt), torch.from_numpy(y[train]),
            torch.from_numpy(xv), torch.from_numpy(y[valid]))


def trial(data, hidden, classes, activation, seed):
    xt, yt, xv, yv = data
    torch.manual_seed(seed)
    layers, width = [], xt.shape[1]
    for h in hidden:
        layers += [torch.nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(torch.nn.Linear(width, classes))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for idx in torch.randperm(len(xt)).split(64):
        opt.zero_grad()
        loss_fn(model(xt[idx]), yt[idx]).backward()
        opt.step()
    with torch.no_grad():
        total = sum(
            torch.nn.functional.cross_entropy(model(xb), yb, reduction="sum").item()
            for xb, yb in zip(xv.split(64), yv.split(64))
        )
    elapsed = time.perf_counter() - started
    return total / len(xv), elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="datasets", help="folder with digits.csv and the mnist10k IDX files")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the validation losses")
    parser.add_argument("--rounds", type=int, default=11, help="timed trials per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaders = {"digits": load_digits, "mnist10k": load_mnist10k}
    results = []
    for name, hidden in NETWORKS.items():
        x, y = loaders[name](args.data)
        classes = int(y.max()) + 1
        splits = [split_standardize(x, y, s) for s in range(max(args.seeds, args.rounds))]
        for activation in ACTIVATIONS:
            losses = [trial(splits[s], hidden, classes, activation, s)[0] for s in range(args.seeds)]
            # Timed after a warm-up trial, so one-off start-up costs are not counted.
            trial(splits[0], hidden, classes, activation, 0)
            times = [trial(splits[s], hidden, classes, activation, s)[1] for s in range(args.rounds)]
            results.append({
                "dataset": name,
                "activation": activation,
                "val_loss": losses,
                "ms_per_trial": min(times) * 1e3,
            })
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
