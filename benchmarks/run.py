"""Training-speed benchmark of rbp-native against numpy and PyTorch (CPU), in one command.

    python benchmarks/run.py                 # full run (about half an hour on 2 cores)
    python benchmarks/run.py --quick         # a few workloads, one round (a few minutes)
    python benchmarks/run.py --nets conv     # the paper's CIFAR-10 conv net (batch 128, with momentum)

The same training math (see benchmarks/references.py) is implemented three ways (rbp-native,
numpy float32, PyTorch eager, plus PyTorch through torch.compile when it works here) and timed in
the same run, on the same data, weights and thread count. Each implementation runs in its own
subprocess (thread pools set before import, peak RSS per implementation); rounds interleave the
implementations so that a noisy neighbour hurts all of them alike. Also measured: the machine's
single-precision GEMM peak (Eigen's kernels at rbp-native's instruction set, and numpy's BLAS), a
numerical agreement check, and a breakdown of rbp-native's step into forward, channel and update
(benchmarks/cpp/phases.cpp, built with CMake on the fly).

The conv net (--nets conv; not in the default run) is the paper's CIFAR-10 network (benchmarks/
conv_references.py: rbp-native through Sequential and Trainer.fit, numpy with im2col, PyTorch eager
with a manual backward pass), timed on a fixed subset of --conv-examples images and scaled to a
50000-image epoch, with the step's GFLOP/s against PyTorch's measured convolution peak.

With --isa-cap avx2 every implementation is held to AVX2+FMA, as on a laptop CPU without AVX-512:
rbp-native's AVX2 variant, numpy's OpenBLAS with its Haswell kernels, PyTorch with its AVX2 kernels
and MKL and oneDNN capped at AVX2 (through their documented environment variables; the worker
records what each library reports), and the GEMM peak measured the same way.

Writes benchmarks/results/<machine>-<date>[-avx2].json and .md (see --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _machine as machine  # noqa: E402 (the modules beside this script)
from _report import evaluate_targets, markdown  # noqa: E402
from _workloads import (  # noqa: E402
    ALGORITHMS,
    CONV,
    CONV_EPOCH,
    CONV_IMPLS,
    CONV_ONLY_IMPLS,
    DEFAULT_BATCHES,
    EPOCH,
    IMPLS,
    NET_NAMES,
    NETS,
    OPT_IN_IMPLS,
    VARIANT_BATCHES,
    VARIANTS,
    disagreements,
    flops_per_example,
    initial_weights,
    load_conv_data,
    load_data,
    summarize,
    workload_options,
)
from conv_references import ConvNet  # noqa: E402

log = machine.log


@dataclass
class Settings:
    """What one run measures, after --quick and the defaults per net are applied."""

    nets: list[str]
    algorithms: list[str]
    variants: list[str]
    impls: list[str]
    threads: list[int]
    batches: dict[str, list[int]]
    variant_batches: dict[str, list[int]]
    conv_net: ConvNet


@dataclass
class Timings:
    """Everything the interleaved rounds measured."""

    samples: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    warmups: dict[str, list[float]] = field(default_factory=dict)
    worker_info: dict[str, Any] = field(default_factory=dict)
    gemm: dict[int, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    conv_peak: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few workloads, one round")
    p.add_argument(
        "--nets",
        default="mnist,wide",
        help=f"any of {', '.join(NET_NAMES)}: the MNIST net, the wide net, the paper's CIFAR-10 conv net "
        "(default: the MLPs)",
    )
    p.add_argument("--batches", default=None, help="batch sizes for every net (default: per net)")
    p.add_argument(
        "--algorithms",
        default=",".join(ALGORITHMS),
        help="at every batch: bp, rbp, srbp, or a variant (see --variants)",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="channel variants (ALG:density=P sparse feedback, srbp:quantize=BITS quantised signals), "
        "run at the batches of --variant-batches only ('' for none)",
    )
    p.add_argument(
        "--variant-batches",
        default=None,
        help="batch sizes of the variants for every net (default: "
        + ", ".join(f"{net} {','.join(map(str, b))}" for net, b in VARIANT_BATCHES.items())
        + ")",
    )
    p.add_argument(
        "--impls",
        default=None,
        help=f"default {','.join(IMPLS)} (without torch-compile under --isa-cap: see the README); also "
        f"{','.join(OPT_IN_IMPLS)} (Trainer(precision='bf16'))",
    )
    p.add_argument("--threads", default="1,2")
    p.add_argument("--examples", type=int, default=6000, help="examples per timed epoch, MNIST net")
    p.add_argument("--wide-examples", type=int, default=3000, help="examples per timed epoch, wide net")
    p.add_argument(
        "--conv-examples",
        type=int,
        default=640,
        help="images per timed epoch, conv net (640: five steps of 128; times are scaled to 50000 images)",
    )
    p.add_argument(
        "--conv-net",
        default="paper",
        help="the conv net's sizes: 'paper' or NAME=INTEGER overrides of "
        + ", ".join(f"{f}={getattr(ConvNet(), f)}" for f in ConvNet.__dataclass_fields__)
        + " (e.g. filters=8,dense=32,side=16 for a quick try of the harness)",
    )
    p.add_argument("--conv-lr", type=float, default=0.01, help="conv net: learning rate")
    p.add_argument("--conv-momentum", type=float, default=0.9, help="conv net: momentum (Keras-style, as rbp-native)")
    p.add_argument("--conv-decay", type=float, default=1e-5, help="conv net: learning-rate decay")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per workload and round")
    p.add_argument(
        "--data",
        default="auto",
        choices=["auto", "mnist", "synthetic"],
        help="auto: MNIST (MLPs) and CIFAR-10 (conv net) where found under RBP_NATIVE_DATA or ../shared/data, "
        "synthetic data otherwise; mnist: stop without MNIST (the conv net as auto); synthetic: always synthetic",
    )
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--decay", type=float, default=1e-6)
    p.add_argument("--build-dir", default=os.path.join(machine.ROOT, "build", "bench"))
    p.add_argument("--no-native-bench", action="store_true", help="skip the C++ GEMM peak and phase breakdown")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--machine", default=None, help="name used in the result file names")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    p.add_argument(
        "--isa-cap",
        choices=["avx2"],
        default=None,
        help="hold every implementation to AVX2+FMA (a CPU without AVX-512); results get an -avx2 suffix",
    )
    args = p.parse_args(argv)
    machine.set_isa_cap(args.isa_cap)

    nets = [n for n in args.nets.split(",") if n]
    unknown = [n for n in nets if n not in NET_NAMES]
    if unknown:
        p.error(f"unknown net {', '.join(unknown)} (expected {', '.join(NET_NAMES)})")
    try:
        conv_net = ConvNet.parse(args.conv_net)
    except ValueError as e:
        p.error(str(e))
    for name in ("examples", "wide_examples", "conv_examples"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.conv_momentum < 1:
        p.error(f"--conv-momentum must lie in [0, 1), got {args.conv_momentum}")
    algorithms = [a for a in args.algorithms.split(",") if a]
    # torch 2.13's torch.compile miscompiles this training step under ATEN_CPU_CAPABILITY=avx2 (NaN
    # weights after three steps, caught by the agreement check), so a capped run leaves it out
    # unless asked for.
    impls = [
        i
        for i in (args.impls or ",".join(i for i in IMPLS if not (args.isa_cap and i == "torch-compile"))).split(",")
        if i
    ]
    batches = {n: ([int(b) for b in args.batches.split(",")] if args.batches else DEFAULT_BATCHES[n]) for n in nets}
    variants = [a for a in args.variants.split(",") if a]
    variant_batches = {
        n: (
            [int(b) for b in args.variant_batches.split(",")]
            if args.variant_batches and n != CONV  # the conv references have no channel variants
            else VARIANT_BATCHES[n]
        )
        for n in nets
    }
    if args.quick:
        batches = {n: ([1, 128] if n == "mnist" else [128]) for n in nets}
        algorithms = [a for a in algorithms if a in ("bp", "srbp")] or algorithms
        variants = []
        args.rounds, args.epochs = 1, 3
    for spec in algorithms + variants:
        try:
            workload_options(spec)
        except ValueError as e:
            p.error(str(e))
    settings = Settings(
        nets=nets,
        algorithms=algorithms,
        variants=variants,
        impls=impls,
        threads=[int(t) for t in args.threads.split(",") if t],
        batches=batches,
        variant_batches=variant_batches,
        conv_net=conv_net,
    )
    return args, settings


def start_report(argv: list[str] | None, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The machine, versions and settings notes; drops the torch columns when PyTorch is missing."""
    arguments = argv if argv is not None else sys.argv[1:]
    command = "python " + " ".join([os.path.relpath(__file__, os.getcwd()), *arguments])
    report: dict[str, Any] = {
        "command": command,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine.machine_info(),
        "git": machine.git_describe(),
        "versions": machine.versions(),
        "numpy_blas": machine.numpy_blas(),
        "isa_cap": args.isa_cap,
        "notes": [],
    }
    if args.isa_cap and args.impls is None:
        report["notes"].append(
            "torch.compile is left out under the instruction-set cap: torch 2.13's compiled step "
            "gives NaN weights with ATEN_CPU_CAPABILITY=avx2 on this machine (the agreement "
            "check catches it when asked for with --impls)."
        )
    if CONV in settings.nets:
        report["conv_net"] = settings.conv_net.describe()
        plain = [a for a in settings.algorithms if a in ALGORITHMS]
        if plain != settings.algorithms:
            report["notes"].append(f"The conv net runs the plain algorithms only ({', '.join(plain) or 'none'}).")
    if report["versions"].get("torch") is None:
        settings.impls = [i for i in settings.impls if not i.startswith("torch")]
        report["notes"].append("PyTorch is not installed: its columns are skipped.")
    return report


def make_workloads(args: argparse.Namespace, settings: Settings) -> list[dict[str, Any]]:
    workloads = []
    for net in settings.nets:
        if net == CONV:
            workloads += [
                {
                    "net": net,
                    "batch": batch,
                    "algorithm": alg,
                    "examples": args.conv_examples,
                    "key": f"{net}/b{batch}/{alg}",
                    "conv_net": dataclasses.asdict(settings.conv_net),
                    "lr": args.conv_lr,
                    "decay": args.conv_decay,
                    "momentum": args.conv_momentum,
                }
                for batch in settings.batches[net]
                for alg in settings.algorithms
                if alg in ALGORITHMS
            ]
            continue
        runs = [(batch, alg) for batch in settings.batches[net] for alg in settings.algorithms]
        runs += [
            (batch, alg)
            for batch in settings.variant_batches[net]
            for alg in settings.variants
            if (batch, alg) not in runs
        ]
        for batch, alg in sorted(runs, key=lambda r: r[0]):
            workloads.append(
                {
                    "net": net,
                    "batch": batch,
                    "algorithm": alg,
                    "examples": args.examples if net == "mnist" else args.wide_examples,
                    "key": f"{net}/b{batch}/{alg}",
                    "lr": args.lr,
                    "decay": args.decay,
                }
            )
    return workloads


def agreement_check(
    report: dict[str, Any],
    base_cfg: dict[str, Any],
    workloads: list[dict[str, Any]],
    args: argparse.Namespace,
    settings: Settings,
) -> None:
    """Three SGD steps of every implementation from the same weights, compared with rbp-native's (the conv
    net in float64 and float32: _worker.TOLERANCE_CONV)."""
    check_impls = [i for i in ["rbp-native", "numpy", "torch", "torch-compile"] if i in settings.impls]
    if "rbp-native" not in check_impls or len(check_impls) < 2:
        return
    log("numerical check")
    check_wl = [w for w in workloads if w["batch"] == max(settings.batches[w["net"]])]
    res = machine.run_worker(
        {**base_cfg, "mode": "check", "impls": check_impls, "workloads": check_wl, "steps": 3}, "check", 1, args.timeout
    )
    report["check"] = res["check"] if res else None
    for key, impl, diff, change in disagreements(report["check"]):
        log(f"WARNING: {impl} disagrees with rbp-native on {key} by {diff:.1e} (parameters changed by {change:.1e})")


def build_programs(report: dict[str, Any], args: argparse.Namespace, isa: str) -> dict[str, str]:
    """The C++ GEMM-peak and phase programs, or none (with a note) when they cannot be built."""
    if args.no_native_bench:
        return {}
    log(f"building the C++ benchmark programs ({isa}) in {args.build_dir}")
    try:
        return machine.build_native_benchmarks(isa, args.build_dir)
    except Exception as exc:  # noqa: BLE001
        report["notes"].append(
            f"C++ benchmark programs not built ({str(exc).splitlines()[0]}): no Eigen GEMM peak and no phase breakdown."
        )
        log(str(exc))
        return {}


def round_order(impls: list[str], rnd: int) -> list[str]:
    """The implementations in round `rnd`'s order: the list rotated by one place per round, so that each
    goes first in turn. A slow spell of this kind of VM (every program up to ~70% slower for a minute or
    two) then lands on a different implementation's turn in each round instead of on the first one's in
    every round, and a median over rounds leaves it out."""
    shift = rnd % len(impls) if impls else 0
    return impls[shift:] + impls[:shift]


def timing_rounds(
    base_cfg: dict[str, Any],
    workloads: list[dict[str, Any]],
    programs: dict[str, str],
    args: argparse.Namespace,
    settings: Settings,
) -> Timings:
    """Rounds that interleave the implementations (and the GEMM peak), each round in another order
    (round_order), so that a noisy neighbour hurts all of them alike."""
    timings = Timings(gemm={t: {"eigen": [], "numpy": []} for t in settings.threads})
    for rnd in range(args.rounds):
        for threads in settings.threads:
            # the GEMM peak, measured in every round alongside the training runs
            timings.gemm[threads]["numpy"].append(machine.numpy_gemm_peak(threads, 2048, 1.0))
            if "gemm_peak" in programs:
                timings.gemm[threads]["eigen"].append(
                    machine.run_json([programs["gemm_peak"], "2048", str(threads), "1.0"], threads)
                )
            if CONV in settings.nets and any(i.startswith("torch") for i in settings.impls):
                timings.conv_peak.setdefault(threads, []).append(machine.torch_conv_peak(threads, 1.0))
            for net in settings.nets:
                net_wl = [w for w in workloads if w["net"] == net]
                for impl in round_order(settings.impls, rnd):
                    if net == CONV and impl not in CONV_IMPLS:
                        continue  # no conv net version
                    if net != CONV and impl in CONV_ONLY_IMPLS:
                        continue  # the same code as rbp-native there
                    log(f"round {rnd + 1}/{args.rounds}: {impl} {net} threads={threads}")
                    cfg = {
                        **base_cfg,
                        "impl": impl,
                        "threads": threads,
                        "workloads": net_wl,
                        "warmup": 1,
                        "epochs": args.epochs,
                    }
                    res = machine.run_worker(cfg, impl, threads, args.timeout)
                    if not res:
                        continue
                    timings.worker_info[impl] = res["info"]
                    for r in res["results"]:
                        timings.samples.setdefault((impl, threads, r["key"]), []).extend(r["times"])
                        if impl == "torch-compile":
                            timings.warmups.setdefault(f"{r['key']}/t{threads}", []).append(r["warmup_s"])
                    key = f"{net}/{threads}"
                    timings.rss.setdefault(key, {})[impl] = max(
                        timings.rss.get(key, {}).get(impl, 0.0), res["maxrss_kb"] / 1024
                    )
    return timings


def gemm_peaks(gemm: dict[int, dict[str, list[dict[str, Any]]]], threads_list: list[int]) -> dict[str, Any]:
    """Per thread count: the best round of each library and the higher of the two (the peak used)."""
    peaks: dict[str, Any] = {}
    for threads in threads_list:
        entry: dict[str, Any] = {}
        for lib in ("eigen", "numpy"):
            runs = [g for g in gemm[threads][lib] if "gflops_best" in g]
            if runs:
                best = max(runs, key=lambda g: g["gflops_best"])
                entry[lib] = {**best, "rounds": [g["gflops_best"] for g in runs]}
        entry["peak"] = max([e["gflops_best"] for e in entry.values()] or [None]) if entry else None
        peaks[str(threads)] = entry
    return peaks


def conv_peaks(conv_peak: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per thread count: the best round of PyTorch's convolution peak (machine.torch_conv_peak)."""
    peaks: dict[str, Any] = {}
    for threads, runs in conv_peak.items():
        good = [r for r in runs if "gflops_best" in r]
        if good:
            best = max(good, key=lambda r: r["gflops_best"])
            peaks[str(threads)] = {**best, "rounds": [r["gflops_best"] for r in good]}
        else:
            peaks[str(threads)] = {"error": runs[-1].get("error") if runs else "not measured"}
    return peaks


def summarize_workloads(
    workloads: list[dict[str, Any]],
    samples: dict[tuple[str, int, str], list[float]],
    peaks: dict[str, Any],
    wrong_math: set[str],
    settings: Settings,
    conv_peak: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per workload and thread count: each implementation's epoch times and rbp-native's speed-ups;
    implementations in `wrong_math` take no part in the ratios. The conv net's epochs are CIFAR-10's
    (50000 images), with the time of one step and its share of the convolution peak too."""
    out_wl = []
    for threads in settings.threads:
        for w in workloads:
            conv = w["net"] == CONV
            if conv:
                conv_net = ConvNet(**w["conv_net"])
                flops = conv_net.flops_per_example(w["algorithm"])
            else:
                flops = flops_per_example(NETS[w["net"]], w["algorithm"])
            entry = {
                "net": w["net"],
                "sizes": conv_net.describe() if conv else NETS[w["net"]],
                "batch": w["batch"],
                "algorithm": w["algorithm"],
                "threads": threads,
                "examples_per_timed_epoch": w["examples"],
                "epoch_examples": CONV_EPOCH if conv else EPOCH,
                "flops_per_example": flops,
                "impls": {},
                "ratios": {},
            }
            if conv:
                entry["macs_per_example"] = conv_net.macs_per_example(w["algorithm"])
            for impl in settings.impls:
                ts = samples.get((impl, threads, w["key"]))
                if ts:
                    entry["impls"][impl] = (
                        summarize(ts, w["examples"], flops, CONV_EPOCH, w["batch"])
                        if conv
                        else summarize(ts, w["examples"], flops)
                    )
            rb = entry["impls"].get("rbp-native")
            peak = peaks.get(str(threads), {}).get("peak")
            conv_best = (conv_peak or {}).get(str(threads), {}).get("gflops_best") if conv else None
            if rb:
                if peak:
                    rb["pct_peak"] = 100.0 * rb["gflops"] / peak
                if conv_best:
                    rb["pct_conv_peak"] = 100.0 * rb["gflops"] / conv_best
                r = rb["epoch_s_median"]
                medians = {i: v["epoch_s_median"] for i, v in entry["impls"].items() if i not in wrong_math}
                get = medians.get
                torch_times = [t for t in (get("torch"), get("torch-compile")) if t]
                others = [t for t in (get("numpy"), get("torch"), get("torch-compile")) if t]
                entry["ratios"] = {
                    "numpy": get("numpy") / r if get("numpy") else None,
                    "torch": get("torch") / r if get("torch") else None,
                    "torch_compile": get("torch-compile") / r if get("torch-compile") else None,
                    "torch_best": min(torch_times) / r if torch_times else None,
                    "best_other": min(others) / r if others else None,
                }
            out_wl.append(entry)
    return out_wl


def phase_breakdown(
    programs: dict[str, str], workloads: list[dict[str, Any]], threads_list: list[int]
) -> list[dict[str, Any]]:
    """rbp-native's step split into forward, channel and update (benchmarks/cpp/phases.cpp)."""
    log("phase breakdown")
    phases = []
    for threads in threads_list:
        for w in workloads:
            if w["net"] not in NETS:  # the program times the MLPs' steps only
                continue
            res = machine.run_json(
                [
                    programs["phases"],
                    "-".join(map(str, NETS[w["net"]])),
                    str(w["batch"]),
                    w["algorithm"],
                    str(threads),
                    "0.3",
                ],
                threads,
            )
            phases.append(
                {"net": w["net"], "batch": w["batch"], "algorithm": w["algorithm"], "threads": threads, **res}
            )
    return phases


def write_results(report: dict[str, Any], args: argparse.Namespace) -> str:
    """<out>/<machine>-<date>[-<isa cap>].json and .md; returns the common stem."""
    os.makedirs(args.out, exist_ok=True)
    slug = args.machine or machine.machine_slug(report["machine"])
    stem = os.path.join(
        args.out, f"{slug}-{_dt.date.today().isoformat()}" + (f"-{args.isa_cap}" if args.isa_cap else "")
    )
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    return stem


def write_inputs(
    directory: str, report: dict[str, Any], args: argparse.Namespace, settings: Settings
) -> dict[str, Any]:
    """The data and initial weights every implementation starts from, as files in `directory`;
    returns the part of the workers' configuration that names them."""
    base_cfg: dict[str, Any] = {"data": {}, "init": os.path.join(directory, "init.npz")}
    mlps = [n for n in settings.nets if n in NETS]
    if mlps:
        x, y, report["data"] = load_data(args.data, max(args.examples, args.wide_examples))
        path = os.path.join(directory, "data.npz")
        np.savez(path, x=x, y=y)
        base_cfg["data"].update({net: path for net in mlps})
    if CONV in settings.nets:
        # enough images for the agreement check's three steps too
        examples = max(args.conv_examples, 3 * max(settings.batches[CONV]))
        x, y, report["data_conv"] = load_conv_data(args.data, examples, settings.conv_net)
        path = os.path.join(directory, "data_conv.npz")
        np.savez(path, x=x, y=y)
        base_cfg["data"][CONV] = path
    np.savez(
        base_cfg["init"],
        **initial_weights(settings.nets, settings.algorithms + settings.variants, settings.conv_net),
    )
    return base_cfg


def add_results(
    report: dict[str, Any],
    timings: Timings,
    workloads: list[dict[str, Any]],
    programs: dict[str, str],
    args: argparse.Namespace,
    settings: Settings,
) -> None:
    """Everything measured, summarised into the report, with the targets checked."""
    report["worker_info"] = timings.worker_info
    ran_isa = timings.worker_info.get("rbp-native", {}).get("isa", args.isa_cap)
    if args.isa_cap and ran_isa != args.isa_cap:
        report["notes"].append(f"rbp-native ran its {ran_isa} variant, not {args.isa_cap}.")
    if timings.warmups:
        report["torch_compile_warmup_s"] = timings.warmups
    report["gemm_peak"] = gemm_peaks(timings.gemm, settings.threads)
    if timings.conv_peak:
        report["conv_peak"] = conv_peaks(timings.conv_peak)
    wrong_math = {impl for _, impl, _, _ in disagreements(report.get("check"))}
    report["workloads"] = summarize_workloads(
        workloads, timings.samples, report["gemm_peak"], wrong_math, settings, report.get("conv_peak")
    )
    report["rss_mib"] = timings.rss
    report["settings"] = {
        "impls": settings.impls,
        "threads": settings.threads,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "samples": args.rounds * args.epochs,
        "examples": args.examples,
        "wide_examples": args.wide_examples,
        "lr": args.lr,
        "decay": args.decay,
        "nets": {n: NETS[n] for n in settings.nets if n in NETS},
    }
    if CONV in settings.nets:
        report["settings"].update(
            conv_net=dataclasses.asdict(settings.conv_net),
            conv_examples=args.conv_examples,
            conv_lr=args.conv_lr,
            conv_momentum=args.conv_momentum,
            conv_decay=args.conv_decay,
        )
    if wrong_math:
        report["notes"].append(
            f"Left out of every ratio, as their weights disagree with rbp-native's in the "
            f"agreement check: {', '.join(sorted(wrong_math))}."
        )
    if "phases" in programs:
        report["phases"] = phase_breakdown(programs, workloads, settings.threads)
    report["targets"] = evaluate_targets(report["workloads"], wrong_math)
    report["notes"].append("Targets are checked with each implementation at its best thread count.")
    try:
        report["machine"]["load_average_at_end"] = os.getloadavg()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_arguments(argv)
    import rbp_native

    report = start_report(argv, args, settings)
    log(f"rbp-native {rbp_native.__version__} isa={rbp_native.isa}; impls {settings.impls}; threads {settings.threads}")
    tmp = tempfile.mkdtemp(prefix="rbp-bench-")
    base_cfg = write_inputs(tmp, report, args, settings)
    workloads = make_workloads(args, settings)
    agreement_check(report, base_cfg, workloads, args, settings)
    programs = build_programs(report, args, rbp_native.isa)
    timings = timing_rounds(base_cfg, workloads, programs, args, settings)
    add_results(report, timings, workloads, programs, args, settings)
    stem = write_results(report, args)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {stem}.json and {stem}.md")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
