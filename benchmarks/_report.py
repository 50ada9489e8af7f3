"""The benchmark's report: the Markdown tables of a results file and the check of the
performance issue's targets."""

from __future__ import annotations

from typing import Any

from _machine import AVX2_CAP_ENV
from _workloads import ALGORITHMS, CONV, CONV_EPOCH, EPOCH, disagreements, flops_per_example


def fmt_s(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3g}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    m = report["machine"]
    lines.append(f"# rbp-native training benchmark — {m['cpu']}, {m['logical_cpus']} CPUs, {report['date']}")
    lines.append("")
    lines.append(f"Command: `{report['command']}`  ")
    v = report["versions"]
    lines.append(
        f"rbp-native {v['rbp_native']} (instruction set **{v['rbp_native_isa']}**, "
        f"git {report.get('git', {}).get('commit', '?')[:10]}, "
        f"{report.get('git', {}).get('modified_files', '?')} modified files), numpy {v['numpy']}, "
        f"torch {v.get('torch')} (CPU capability {v.get('torch_cpu_capability', '?')}); "
        f"Python {m['python']}; {m['platform']}  "
    )
    if report.get("isa_cap"):
        lines.append(
            f"**Every implementation held to {report['isa_cap'].upper()}+FMA** (as on a CPU without "
            "AVX-512): " + ", ".join(f"`{k}={v}`" for k, v in AVX2_CAP_ENV.items()) + ".  "
        )
    data = []
    if report.get("data"):
        data.append(f"Data: {report['data']}; times scaled to a {EPOCH}-example epoch")
    if report.get("data_conv"):
        data.append(
            f"conv net ({report['conv_net']}, lr {report['settings']['conv_lr']}, momentum "
            f"{report['settings']['conv_momentum']}, decay {report['settings']['conv_decay']}): "
            f"{report['data_conv']}; times scaled to a {CONV_EPOCH}-image epoch"
        )
    lines.append(
        "; ".join(data) + f"; median of {report['settings']['samples']} epochs (min–max in brackets), "
        f"{report['settings']['rounds']} interleaved rounds. Load average at start: "
        f"{m.get('load_average_at_start')}."
    )
    blas = report.get("numpy_blas", {}).get("threadpoolctl") or []
    if blas:
        lines.append(
            "numpy BLAS: "
            + "; ".join(
                f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, {b.get('threading_layer')})"
                for b in blas
            )
        )
    lines.append("")
    lines.append("## GEMM peak (single precision, n×n, GFLOP/s, best of repeats)")
    lines.append("")
    lines.append("| threads | Eigen (rbp-native's kernels) | numpy BLAS | peak used |")
    lines.append("|---|---|---|---|")
    for t, p in sorted(report["gemm_peak"].items()):
        e = p.get("eigen", {}).get("gflops_best")
        n = p.get("numpy", {}).get("gflops_best")
        lines.append(f"| {t} | {fmt_s(e)} | {fmt_s(n)} | {fmt_s(p.get('peak'))} |")
    lines.append("")
    if report.get("conv_peak"):
        lines.append("## Convolution peak (PyTorch conv2d forward, GFLOP/s, best of repeats)")
        lines.append("")
        lines.append("| threads | shape | GFLOP/s |")
        lines.append("|---|---|---|")
        for t, p in sorted(report["conv_peak"].items()):
            lines.append(f"| {t} | {p.get('shape', '—')} | {fmt_s(p.get('gflops_best'))} |")
        lines.append("")
    if report.get("check"):
        lines.append("## Numerical agreement (3 SGD steps from the same weights and biases)")
        lines.append("")
        lines.append("| workload | dtype | max |w| | max change | max |Δw| vs rbp-native | tolerance (× change) |")
        lines.append("|---|---|---|---|---|---|")
        for c in report["check"]:
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in c["max_abs_diff"].items())
            lines.append(
                f"| {c['key']} | {c.get('dtype', 'float32')} | {c['max_abs_weight']:.3f} | "
                f"{c['max_weight_change']:.2e} | {diffs} | {c.get('tolerance', 1e-3):.0e} |"
            )
        disagree = [f"{key} ({impl})" for key, impl, _, _ in disagreements(report["check"])]
        lines.append("")
        lines.append(
            "**The implementations disagree** beyond rounding (a difference above the tolerance times the "
            f"largest change): {', '.join(disagree)}. Their timings do not compare the same math, so an "
            "implementation that disagrees anywhere is left out of every ratio."
            if disagree
            else "All implementations agree (every difference below the tolerance times the largest change)."
        )
        if any(c.get("dtype") == "float64" for c in report["check"]):
            lines.append(
                "The conv net is checked in float64 (its math: no rounding there can move a max-pool's winner) "
                "and in float32 (as timed: where two pool candidates lie within float32 rounding, "
                "implementations that sum in different orders pick different winners, and that signal goes "
                "elsewhere; the float32 tolerance tells such flips from a wrong computation)."
            )
        lines.append("")
    impls = report["settings"]["impls"]
    mlp_workloads = [w for w in report["workloads"] if w["net"] != CONV]
    for threads in report["settings"]["threads"] if mlp_workloads else []:
        lines.append(f"## {threads} thread{'s' if threads > 1 else ''}: seconds per 60000-example epoch")
        lines.append("")
        head = (
            "| net | batch | alg | "
            + " | ".join(impls)
            + " | rbp samples/s | × numpy | × torch | × best other | rbp GFLOP/s | % of peak |"
        )
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for w in mlp_workloads:
            if w["threads"] != threads:
                continue
            cells = []
            for impl in impls:
                r = w["impls"].get(impl)
                cells.append(
                    "—" if not r else f"{r['epoch_s_median']:.3g} ({r['epoch_s_min']:.3g}–{r['epoch_s_max']:.3g})"
                )
            rb = w["impls"].get("rbp-native") or {}
            rt = w["ratios"]
            lines.append(
                f"| {w['net']} | {w['batch']} | {w['algorithm']} | "
                + " | ".join(cells)
                + f" | {rb.get('samples_per_s', 0):,.0f} | {fmt_x(rt.get('numpy'))} | "
                f"{fmt_x(rt.get('torch_best'))} | {fmt_x(rt.get('best_other'))} | "
                f"{fmt_s(rb.get('gflops'))} | {fmt_s(rb.get('pct_peak'))} |"
            )
        lines.append("")
    if mlp_workloads:
        lines.append(
            "× torch uses the faster of eager PyTorch and torch.compile; × best other the fastest of numpy, "
            "PyTorch eager and torch.compile. GFLOP/s counts 2 × the multiply-accumulates of the forward "
            "pass, the channel and the weight update; % of peak is against the GEMM peak at the same thread "
            "count."
        )
        lines.append("")
    lines += conv_tables(report)
    thread_counts = sorted({w["threads"] for w in report["workloads"]})
    lines.append("## Thread scaling (median epoch seconds; in brackets the speed-up over one thread)")
    lines.append("")
    lines.append("| net | batch | alg | implementation | " + " | ".join(f"{t} thr." for t in thread_counts) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(thread_counts))
    by_key: dict[tuple, dict[int, Any]] = {}
    for w in report["workloads"]:
        by_key.setdefault((w["net"], w["batch"], w["algorithm"]), {})[w["threads"]] = w
    for (net, batch, alg), per in by_key.items():
        for impl in impls:
            runs = {t: per.get(t, {}).get("impls", {}).get(impl) for t in thread_counts}
            if not any(runs.values()):
                continue
            one = runs.get(1)
            cells = []
            for t in thread_counts:
                r = runs[t]
                if not r:
                    cells.append("—")
                elif one and t != 1:
                    cells.append(f"{r['epoch_s_median']:.3g} ({one['epoch_s_median'] / r['epoch_s_median']:.2f}×)")
                else:
                    cells.append(f"{r['epoch_s_median']:.3g}")
            lines.append(f"| {net} | {batch} | {alg} | {impl} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Peak memory (VmHWM of each implementation's process, MiB, max over its workloads)")
    lines.append("")
    lines.append("| net | threads | " + " | ".join(impls) + " |")
    lines.append("|---|---|" + "---|" * len(impls))
    for key, row in sorted(report["rss_mib"].items()):
        net, threads = key.split("/")
        lines.append(f"| {net} | {threads} | " + " | ".join(fmt_s(row.get(i)) for i in impls) + " |")
    lines.append("")
    if report.get("phases"):
        lines.append("## Where rbp-native's step goes (µs per batch, benchmarks/cpp/phases.cpp)")
        lines.append("")
        lines.append(
            "| net | batch | alg | threads | step | forward | channel | update | rest | epoch (per batch) "
            "| GFLOP/s of forward+channel+update | % of peak |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for p in report["phases"]:
            u = p.get("us_per_batch")
            if not u:
                continue
            products_us = u["forward"] + u["channel"] + u["update"]
            sizes = report["settings"]["nets"].get(p["net"])
            gflops = (
                flops_per_example(sizes, p["algorithm"]) * p["batch"] / products_us / 1e3
                if sizes and products_us > 0
                else None
            )
            peak = report["gemm_peak"].get(str(p["threads"]), {}).get("peak")
            lines.append(
                f"| {p['net']} | {p['batch']} | {p['algorithm']} | {p['threads']} | {u['step']:.1f} | "
                f"{u['forward']:.1f} | {u['channel']:.1f} | {u['update']:.1f} | {u['rest']:.1f} | "
                f"{u['epoch']:.1f} | {fmt_s(gflops)} | "
                f"{fmt_s(100 * gflops / peak if gflops and peak else None)} |"
            )
        lines.append("")
        lines.append(
            "The forward, channel and update phases are almost all matrix products (the forward phase also "
            "applies the activation): their GFLOP/s is what the step's products reach in place, an upper "
            "bound on what the whole step can reach with these kernels."
        )
        lines.append("")
    if report.get("targets"):
        lines.append("## Targets")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for t in report["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")
    if report.get("notes"):
        lines.append("## Notes")
        lines.append("")
        for n in report["notes"]:
            lines.append(f"- {n}")
        lines.append("")
    return "\n".join(lines)


def conv_tables(report: dict[str, Any]) -> list[str]:
    """The conv net's timings per thread count: epoch and step times, ratios and GFLOP/s."""
    conv = [w for w in report["workloads"] if w["net"] == CONV]
    if not conv:
        return []
    impls = [i for i in report["settings"]["impls"] if any(i in w["impls"] for w in conv)]
    lines = []
    for threads in report["settings"]["threads"]:
        lines.append(
            f"## {threads} thread{'s' if threads > 1 else ''}: conv net, seconds per {CONV_EPOCH}-image epoch "
            "(median step in ms)"
        )
        lines.append("")
        head = (
            "| batch | alg | "
            + " | ".join(impls)
            + " | × numpy | × torch | rbp GFLOP/s | % of conv peak | % of GEMM peak |"
        )
        lines.append(head)
        lines.append("|" + "---|" * (head.count("|") - 1))
        for w in conv:
            if w["threads"] != threads:
                continue
            cells = []
            for impl in impls:
                r = w["impls"].get(impl)
                cells.append(
                    "—"
                    if not r
                    else f"{r['epoch_s_median']:.4g} ({r['epoch_s_min']:.4g}–{r['epoch_s_max']:.4g}; "
                    f"{1e3 * r['step_s_median']:.4g} ms)"
                )
            rb = w["impls"].get("rbp-native") or {}
            rt = w["ratios"]
            lines.append(
                f"| {w['batch']} | {w['algorithm']} | "
                + " | ".join(cells)
                + f" | {fmt_x(rt.get('numpy'))} | {fmt_x(rt.get('torch'))} | {fmt_s(rb.get('gflops'))} | "
                f"{fmt_s(rb.get('pct_conv_peak'))} | {fmt_s(rb.get('pct_peak'))} |"
            )
        lines.append("")
    lines.append(
        "× numpy and × torch: their median epoch over rbp-native's. GFLOP/s counts 2 × the multiply-accumulates "
        "of the forward pass, the weight gradients (as many as the forward pass) and the channel (bp, rbp: "
        "the transposed convolutions of blocks 2 and up and the dense layers' data products; srbp: e (F^h)^T "
        "into every hidden stage); % of conv peak is against PyTorch's conv2d on 64x16x16 → 64 channels, 5x5, "
        "% of GEMM peak against the GEMM peak, each at the same thread count."
    )
    lines.append("")
    return lines


def evaluate_targets(workloads: list[dict[str, Any]], excluded: set[str]) -> list[dict[str, Any]]:
    """The issue's bars against the measured medians; `excluded` implementations (whose math disagreed
    with rbp-native's) take no part."""
    out = []

    def best_threads(net: str, batch: int, alg: str) -> dict[str, Any] | None:
        cands = [
            w
            for w in workloads
            if w["net"] == net and w["batch"] == batch and w["algorithm"] == alg and "rbp-native" in w["impls"]
        ]
        return min(cands, key=lambda w: w["impls"]["rbp-native"]["epoch_s_median"]) if cands else None

    def fastest(net: str, batch: int, alg: str, impls: tuple[str, ...]) -> float | None:
        vals = [
            w["impls"][i]["epoch_s_median"]
            for w in workloads
            if w["net"] == net and w["batch"] == batch and w["algorithm"] == alg
            for i in impls
            if i in w["impls"] and i not in excluded
        ]
        return min(vals) if vals else None

    def demand(w: dict[str, Any], other: float, bar: float) -> str:
        """What meeting `bar` × `other` would take: rbp-native's GFLOP/s and its share of the GEMM peak."""
        r = w["impls"]["rbp-native"]
        gflops, pct = r.get("gflops"), r.get("pct_peak")
        if not gflops or not pct:
            return ""
        needed = gflops * r["epoch_s_median"] * bar / other
        threads = w["threads"]
        return (
            f"; the bar needs {needed:.0f} GFLOP/s = {100 * needed / (100 * gflops / pct):.0f}% of the "
            f"{threads}-thread peak (rbp-native's best thread count here)"
        )

    # Each implementation at its best thread count.
    for alg in ALGORITHMS:
        w = best_threads("mnist", 1, alg)
        if w:
            r = w["impls"]["rbp-native"]["epoch_s_median"]
            torch_t = fastest("mnist", 1, alg, ("torch", "torch-compile"))
            np_t = fastest("mnist", 1, alg, ("numpy",))
            if torch_t and np_t:
                out.append(
                    {
                        "target": f"MNIST net batch 1 {alg}: ≥6× PyTorch, ≥10× numpy",
                        "measured": f"{torch_t / r:.1f}× PyTorch, {np_t / r:.1f}× numpy",
                        "met": torch_t / r >= 6 and np_t / r >= 10,
                    }
                )
        for batch in (32, 128):
            w = best_threads("mnist", batch, alg)
            other = fastest("mnist", batch, alg, ("numpy", "torch", "torch-compile"))
            if w and other:
                r = w["impls"]["rbp-native"]["epoch_s_median"]
                out.append(
                    {
                        "target": f"MNIST net batch {batch} {alg}: ≥2× the faster of numpy/PyTorch",
                        "measured": f"{other / r:.2f}×" + demand(w, other, 2.0),
                        "met": other / r >= 2,
                    }
                )
        w = best_threads("wide", 128, alg)
        other = fastest("wide", 128, alg, ("numpy", "torch", "torch-compile"))
        if w and other:
            r = w["impls"]["rbp-native"]
            pct = r.get("pct_peak")
            out.append(
                {
                    "target": f"wide net batch 128 {alg}: ≥1.5× the faster other, ≥80% of GEMM peak",
                    "measured": f"{other / r['epoch_s_median']:.2f}×, {pct:.0f}% of peak "
                    f"({w['threads']} thread{'s' if w['threads'] > 1 else ''})" + demand(w, other, 1.5),
                    "met": other / r["epoch_s_median"] >= 1.5 and (pct or 0) >= 80,
                }
            )
    return out
