"""The one-pass training protocol of hypoforge's GPU benchmark, in PyTorch, many runs at once.

Run by `cargo xtask bench gpu` (hypoforge-bench's `gpu`, with `--seeds` and `--device cuda`)
when torch imports; by hand:

    python3 crates/hypoforge-bench/pytorch/batched.py --data datasets --seeds 32 --rounds 3

Protocol per run, one (task, activation, seed), as `one_pass.py` (whose loaders and split this
imports): 80/20 random split per seed, inputs standardized with the training split's statistics,
an MLP with the activation (ReLU, or GELU in its exact erf form) after every hidden layer and
PyTorch's default Linear initialization (seeded), one epoch of Adam(lr 1e-3) on shuffled batches
of 64 (the last one short) with the mean softmax cross-entropy, then the mean cross-entropy over
the validation split. Tasks: digits 64-128-128-10 and mnist10k 784-256-256-10.

Two ways to run it on one device (`--device cuda`, or `cpu` to test):
- batched: every run of a task at once, L = activations x seeds lanes, weights stacked as
  [L, fan_in, fan_out] and multiplied with torch.baddbmm; each lane has its own split, init and
  batch order, and one Adam steps all lanes (Adam is elementwise: the same as one per lane);
- eager: the usual loop, one nn.Sequential and optimizer at a time, for `--eager-runs` runs.
Each lane starts from exactly the model and batch order its eager run would draw, so the two
paths agree up to float rounding (`--self-check` trains seed 0 both ways and asserts it).

Timing: the data, initial weights and batch orders are on the device before the clock starts;
a round is training plus validation; CUDA is synchronized before the clock is read; an untimed
warm-up round per task and path keeps CUDA start-up and kernel selection out; the best of
`--rounds` rounds counts.

Prints one JSON object: {"torch", "device", "seeds", "tasks": {task: {"runs", "batched_seconds",
"batched_runs_per_s", "eager_runs_per_s", "val_loss": {"relu": [per seed], "gelu": [...]}}}},
the validation losses from the batched path. Progress goes to stderr.
"""

import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from one_pass import ACTIVATIONS, NETWORKS, load_digits, load_mnist10k, split_standardize  # noqa: E402

LOADERS = {"digits": load_digits, "mnist10k": load_mnist10k}
FUNCTIONS = {"relu": F.relu, "gelu": F.gelu}  # F.gelu defaults to the exact erf form
BATCH = 64
LR = 1e-3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seeded_start(n_inputs, hidden, classes, activation, seed, n_train):
    """The model and batch order of one run, drawn from the global generator in one_pass.py's
    order: manual_seed, the Linear layers (weight then bias, layer by layer), then randperm."""
    torch.manual_seed(seed)
    layers, width = [], n_inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(torch.nn.Linear(width, classes))
    return torch.nn.Sequential(*layers), torch.randperm(n_train)


def prepare(x, y, hidden, runs, device):
    """Everything the runs [(activation, seed)] need, stacked per lane and on the device."""
    classes = int(y.max()) + 1
    splits = {s: split_standardize(x, y, s) for s in sorted({s for _, s in runs})}
    xt, yt, xv, yv = (torch.stack([splits[s][i] for _, s in runs]).to(device) for i in range(4))
    starts = [seeded_start(x.shape[1], hidden, classes, a, s, xt.shape[1]) for a, s in runs]
    linears = [[m for m in model if isinstance(m, torch.nn.Linear)] for model, _ in starts]
    init = []  # per layer: weights [L, fan_in, fan_out] (so x @ W), biases [L, 1, fan_out]
    for k in range(len(linears[0])):
        init.append(torch.stack([ls[k].weight.detach().t() for ls in linears]).contiguous())
        init.append(torch.stack([ls[k].bias.detach() for ls in linears])[:, None, :])
    # Lanes are grouped by activation, so each activation applies to one contiguous slice.
    acts = [a for a, _ in runs]
    slices = [(a, slice(acts.index(a), len(acts) - acts[::-1].index(a))) for a in dict.fromkeys(acts)]
    return {
        "runs": runs, "xt": xt, "yt": yt, "xv": xv, "yv": yv, "slices": slices,
        "perm": torch.stack([p for _, p in starts]).to(device),
        "init": [p.to(device) for p in init],
        "models": [m for m, _ in starts],
    }


def forward(params, x, slices):
    """x [L, rows, features] -> logits [L, rows, classes]."""
    n_layers = len(params) // 2
    for k in range(n_layers):
        x = torch.baddbmm(params[2 * k + 1], x, params[2 * k])
        if k < n_layers - 1:
            x = torch.cat([FUNCTIONS[a](x[s]) for a, s in slices])
    return x


def batched_round(p, device):
    """One timed training and validation of every lane: (seconds, validation loss per lane)."""
    params = [t.clone().requires_grad_() for t in p["init"]]
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    xt, yt, perm, slices = p["xt"], p["yt"], p["perm"], p["slices"]
    sync(device)
    started = time.perf_counter()
    for i in range(0, perm.shape[1], BATCH):
        idx = perm[:, i:i + BATCH]  # [L, b]; every lane has as many training rows, so one b
        xb = torch.take_along_dim(xt, idx[:, :, None], dim=1)
        yb = torch.gather(yt, 1, idx)
        logits = forward(params, xb, slices)
        # Sum over the lanes of each lane's mean loss (all lanes have b rows): the gradient of
        # a lane's parameters is that of its own mean loss, as in its eager run.
        loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="sum") / idx.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = forward(params, p["xv"], slices)
        ce = F.cross_entropy(logits.flatten(0, 1), p["yv"].flatten(), reduction="none")
        losses = ce.view(len(p["runs"]), -1).mean(1).tolist()  # .tolist() waits for the device
    sync(device)
    return time.perf_counter() - started, losses


def eager_run(p, lane, device):
    """Lane `lane` trained the usual way, alone: (seconds, validation loss)."""
    model = copy.deepcopy(p["models"][lane]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    xt, yt, xv, yv, perm = (p[k][lane] for k in ("xt", "yt", "xv", "yv", "perm"))
    sync(device)
    started = time.perf_counter()
    for idx in perm.split(BATCH):
        opt.zero_grad()
        F.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
    with torch.no_grad():
        loss = F.cross_entropy(model(xv), yv).item()
    sync(device)
    return time.perf_counter() - started, loss


def bench_task(name, x, y, args, device):
    seeds = range(args.seeds)
    runs = [(a, s) for a in ACTIVATIONS for s in seeds]
    p = prepare(x, y, NETWORKS[name], runs, device)
    log(f"{name}: warm-up, then {args.rounds} batched rounds of {len(runs)} lanes")
    batched_round(p, device)
    rounds = [batched_round(p, device) for _ in range(args.rounds)]
    best = min(t for t, _ in rounds)
    losses = rounds[0][1]
    # Eager runs alternate activations (relu 0, gelu 0, relu 1, ...) so both are represented.
    eager_lanes = [runs.index((a, s)) for s in seeds for a in ACTIVATIONS][:max(1, args.eager_runs)]
    log(f"{name}: warm-up, then {args.rounds} eager rounds of {len(eager_lanes)} runs")
    eager_run(p, eager_lanes[0], device)
    eager_best = min(sum(eager_run(p, l, device)[0] for l in eager_lanes) for _ in range(args.rounds))
    return {
        "runs": len(runs),
        "batched_seconds": best,
        "batched_runs_per_s": len(runs) / best,
        "eager_runs_per_s": len(eager_lanes) / eager_best,
        "val_loss": {a: [losses[runs.index((a, s))] for s in seeds] for a in ACTIVATIONS},
    }


def self_check(name, x, y, device):
    """Seed 0, both activations, batched and eager: the validation losses must agree."""
    runs = [(a, 0) for a in ACTIVATIONS]
    p = prepare(x, y, NETWORKS[name], runs, device)
    _, batched = batched_round(p, device)
    out = []
    for lane, (a, s) in enumerate(runs):
        eager = eager_run(p, lane, device)[1]
        rel = abs(batched[lane] - eager) / abs(eager)
        log(f"self-check {name} {a} seed {s}: batched {batched[lane]:.7f} eager {eager:.7f} rel {rel:.1e}")
        out.append({"task": name, "activation": a, "seed": s, "batched": batched[lane],
                    "eager": eager, "relative_difference": rel, "ok": rel <= 1e-4})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="datasets", help="folder with digits.csv and the mnist10k IDX files")
    parser.add_argument("--seeds", type=int, default=32, help="seeds per activation (lanes = 2 x seeds)")
    parser.add_argument("--tasks", default="digits,mnist10k", help="comma-separated, of " + ",".join(NETWORKS))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per path; the best counts")
    parser.add_argument("--eager-runs", type=int, default=4, help="runs per task timed on the eager path")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--self-check", action="store_true",
                        help="train seed 0 batched and eager, assert equal losses within 1e-4 relative")
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in NETWORKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; known: {list(NETWORKS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("batched.py: --device cuda, but torch sees no CUDA device")
    device = torch.device(args.device)
    data = {t: LOADERS[t](args.data) for t in tasks}
    if args.self_check:
        checks = [c for t in tasks for c in self_check(t, *data[t], device)]
        print(json.dumps({"torch": torch.__version__, "self_check": checks}))
        sys.exit(0 if all(c["ok"] for c in checks) else "batched.py: self-check failed")
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "seeds": args.seeds,
        "tasks": {t: bench_task(t, *data[t], args, device) for t in tasks},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
