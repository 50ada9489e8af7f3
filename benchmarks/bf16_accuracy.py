"""Accuracy of Trainer(precision="bf16") against float32 on MNIST at Fig. 1's settings, and of PyTorch's
CPU autocast against PyTorch float32 for BP at the same settings.

    python benchmarks/bf16_accuracy.py rbp-native EPOCHS SEEDS > results.jsonl
    python benchmarks/bf16_accuracy.py torch EPOCHS SEEDS >> results.jsonl

rbp-native: the paper's net 784-100-100-100-100-10 (tanh, softmax), batch 100, lr 0.1, decay 1e-6, one
thread; bp, rbp and srbp, each in float32 and in bf16, seeds 0..SEEDS-1 (network and trainer seed).
torch: BP with nn.Linear layers and autograd from the same initial weights (rbp_native.MLP(seed)), plain
SGD with the same decay schedule, shuffled by torch's generator; float32, and torch.autocast("cpu",
torch.bfloat16) around the forward pass and the loss (PyTorch's CPU autocast: products and their
outputs in bf16, the backward pass following). Prints one JSON line per run with the final test accuracy.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import rbp_native as rbp

SIZES = [784, 100, 100, 100, 100, 10]


def rbp_native_runs(epochs: int, seeds: int) -> None:
    train, test = rbp.datasets.load("mnist")
    for seed in range(seeds):
        for algorithm in ("bp", "rbp", "srbp"):
            for precision in ("float32", "bf16"):
                net = rbp.MLP(SIZES, seed=seed)
                trainer = rbp.Trainer(
                    net, algorithm=algorithm, lr=0.1, decay=1e-6, batch_size=100, seed=seed, threads=1,
                    precision=precision,
                )  # fmt: skip
                start = time.perf_counter()
                history = trainer.fit((train.x, train.y), epochs=epochs, eval=(test.x, test.y), progress=False)
                record = {"impl": "rbp-native", "algorithm": algorithm, "precision": precision, "seed": seed}
                record.update(epochs=epochs, test_accuracy=history.records[-1]["test_accuracy"])
                print(json.dumps({**record, "seconds": time.perf_counter() - start}), flush=True)


def torch_runs(epochs: int, seeds: int) -> None:
    import torch

    torch.set_num_threads(1)
    train, test = rbp.datasets.load("mnist")
    xt, yt = torch.from_numpy(np.ascontiguousarray(train.x, np.float32)), torch.from_numpy(train.y.astype(np.int64))
    xe, ye = torch.from_numpy(np.ascontiguousarray(test.x, np.float32)), torch.from_numpy(test.y.astype(np.int64))
    for seed in range(seeds):
        for mode in ("float32", "autocast-bf16"):
            init = rbp.MLP(SIZES, seed=seed)
            layers: list[torch.nn.Module] = []
            for w, b in zip(init.weights, init.biases):
                linear = torch.nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(w))
                    linear.bias.copy_(torch.from_numpy(b))
                layers += [linear, torch.nn.Tanh()]
            model = torch.nn.Sequential(*layers[:-1])
            generator = torch.Generator().manual_seed(seed)
            autocast = mode != "float32"
            updates, start = 0, time.perf_counter()
            for _ in range(epochs):
                order = torch.randperm(xt.shape[0], generator=generator)
                for i in range(0, xt.shape[0], 100):
                    idx = order[i : i + 100]
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
                    model.zero_grad(set_to_none=True)
                    loss.backward()
                    lr = 0.1 / (1 + 1e-6 * updates)
                    with torch.no_grad():
                        for p in model.parameters():
                            p -= lr * p.grad
                    updates += 1
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                accuracy = (model(xe).argmax(1) == ye).float().mean().item()
            record = {"impl": "torch", "algorithm": "bp", "precision": mode, "seed": seed, "epochs": epochs}
            print(json.dumps({**record, "test_accuracy": accuracy, "seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    which, epochs, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"rbp-native": rbp_native_runs, "torch": torch_runs}[which](epochs, seeds)
