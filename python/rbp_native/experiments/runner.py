"""Running an experiment: every run in its own folder, in parallel processes, resumable.

A run's folder ``<out>/<experiment>/runs/<variant>/seed<k>/`` holds

- ``config.json``: the resolved options (``resolved``, compared on resume), the package version, the
  source tree's git commit (``source``, see :func:`source_revision`), the thread count and the
  network's and trainer's full configuration, written first;
- ``history.csv`` and ``history.json``: one row per epoch, rewritten atomically after every epoch;
- ``checkpoint.npz``: the whole training state (:meth:`Trainer.save`), rewritten atomically after
  every epoch and when the run is interrupted; kept when the run ends;
- ``done.json``: written last, only when the run has finished (``status`` ``"complete"``, or
  ``"diverged"`` when the loss became NaN/inf: the epochs before it are kept).

On resume a run with ``done.json`` whose stored options equal the current ones is skipped; a run
without it continues from its checkpoint (bit for bit as if never stopped, when the thread count is
the same), or starts from scratch when it has none or the checkpoint cannot be read or was written
with other settings (it is then kept as ``checkpoint.npz.unreadable``); a run whose stored options
differ is refused (ValueError) unless ``force=True``, which retrains it from scratch.

``rbp-native train`` trains its one run with the same :func:`execute` (its ``--out`` is the run's
folder, which also gets ``model.npz``), under its own resume rules (``resume`` ``"exact"``,
``"force"`` or ``"restart"``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .._compare import describe_differences
from .._io import atomic_write_text
from .config import ConfigError, Experiment, Run, build_network, comparable, same_settings, validate
from .data import describe_source as describe_data_source
from .data import load_data

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..trainer import Trainer

CONFIG = "config.json"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
DONE = "done.json"
CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"
#: What :func:`execute` does with a checkpoint it finds in the run folder (the task's ``resume``).
RESUME_MODES = ("auto", "exact", "force", "restart")


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_run(jobs: int, threads: int | None = None) -> int:
    """``threads`` if given, else ``max(1, cores // jobs)`` so that the machine is not oversubscribed."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        return int(threads)
    return max(1, cores() // max(1, int(jobs)))


@functools.lru_cache(maxsize=None)
def source_revision() -> dict[str, Any] | None:
    """``{"commit": <git rev-parse HEAD>, "dirty": <tracked files outside docs/ differ from it>}`` of the git checkout
    the package is imported from, or None where it is not imported from one (an installed wheel, no
    git). Written by the code into every run's ``config.json``, ``experiment.json`` and ``report.md``."""
    package = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    # The package's own files must be tracked there: a wheel installed into a venv that happens to lie
    # inside some other checkout is not that checkout's code.
    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = git("rev-parse", "HEAD")
    # Changes under docs/ (documentation, committed results, reports being rewritten) leave the code as it was.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)docs")
    if commit is None or status is None:
        return None
    return {"commit": commit.strip(), "dirty": bool(status.strip())}


def describe_source(source: Any) -> str:
    """``git 1a2b3c4`` (``, with uncommitted changes``), or why there is none."""
    if not isinstance(source, dict) or not source.get("commit"):
        return "not from a git checkout (no commit recorded)"
    return f"git {str(source['commit'])[:12]}" + (" with uncommitted changes" if source.get("dirty") else "")


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _dumps(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=_jsonable) + "\n"


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """A history record with list values spread into numbered columns (``angle_1``, ``angle_2``, ...:
    1-based, the paper's layer numbering for per-layer diagnostics) and dicts into ``key.sub``."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, dict):
            for sub, item in flatten(value).items():
                flat[f"{key}.{sub}"] = item
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value, start=1):
                if isinstance(item, (list, tuple, dict)):
                    for sub, inner in flatten({str(index): item}).items():
                        flat[f"{key}_{sub}"] = inner
                else:
                    flat[f"{key}_{index}"] = item
        else:
            flat[key] = value
    return flat


def write_history(run_dir: Path, records: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """``history.json`` (records as they are) and ``history.csv`` (flattened), both atomically."""
    atomic_write_text(run_dir / HISTORY_JSON, _dumps({"config": config, "epochs": records}))
    rows = [flatten(r) for r in records]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if not columns:  # no epoch finished (a run that diverged at once): the header alone
        columns = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / HISTORY_CSV, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# One run (executed in a worker process, or in this one for jobs=1)


def execute(
    task: dict[str, Any],
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
    *,
    on_start: Callable[[Trainer], Any] | None = None,
    data: tuple[Dataset, Dataset] | None = None,
) -> dict[str, Any]:
    """Train one run, continuing from its checkpoint when it has one, and write its folder; returns a
    short summary. Every run of ``reproduce``/``run`` and ``rbp-native train`` is trained here.

    `task`: ``run_dir``, ``resolved`` (see :meth:`Run.resolved`), ``threads`` (None: all cores), optional
    ``data_root`` and ``download`` (where the data come from unless `data`, ``(train, test)``, is given),
    ``checkpoint_every`` (batches between checkpoints within an epoch; default: at epoch ends only),
    ``progress`` (a progress bar and a line per epoch), ``save_model`` (write ``model.npz`` when the run
    completes) and ``resume``, what becomes of a checkpoint found in the folder (:data:`RESUME_MODES`):

    - ``"auto"`` (default): the run continues from it when its data set, network and trainer options
      equal the run's, the thread count aside (another thread count continues, not bit for bit); else
      it is kept as ``checkpoint.npz.unreadable`` and the run starts from scratch;
    - ``"exact"``: the run continues from it when those options equal the run's, thread count included;
      else ValueError naming the differences (CheckpointError when it cannot be read);
    - ``"force"``: the run continues from it whatever its options, where the shapes allow;
    - ``"restart"``: it is removed and the run starts from scratch.

    `on_start` is called with the trainer (restored, when the run continues) just before training,
    `on_epoch` with each epoch's record once the history is written. Ctrl-C (KeyboardInterrupt, or any
    exception a signal handler raises) stops training within a batch: the checkpoint keeps the state
    and the exception propagates."""
    from .. import __version__
    from ..checkpoint import CheckpointError
    from ..checkpoint import read as read_checkpoint
    from ..trainer import Trainer, TrainingDiverged

    started = time.perf_counter()
    run_dir = Path(task["run_dir"])
    resolved = task["resolved"]
    resume = task.get("resume", "auto")
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {', '.join(RESUME_MODES)}, got {resume!r}")
    train, test = data or load_data(resolved["dataset"], task.get("data_root"), bool(task.get("download", False)))
    seed = int(resolved["seed"])
    net = build_network(resolved["network"], seed)
    trainer = Trainer(net, **resolved["trainer"], seed=seed, threads=task["threads"])
    config = {
        "resolved": resolved,
        "version": __version__,
        "source": source_revision(),
        "threads": trainer.threads,
        "network_config": net.config(),
        "trainer_config": trainer.config(),
        "train_examples": len(train),
        "test_examples": len(test),
        "started": now(),
    }
    data_source = describe_data_source(resolved["dataset"], task.get("data_root"))
    if data_source is not None:
        config["data_source"] = data_source
    checkpoint = run_dir / CHECKPOINT
    # The checkpoint is read once and its options compared once; nothing in the folder changes before
    # that (a refused resume leaves the run as it was).
    contents: tuple[dict[str, Any], dict[str, Any]] | None = None
    unusable = None  # why a checkpoint is set aside ("auto")
    if resume != "restart" and checkpoint.exists():
        try:
            meta, arrays = read_checkpoint(checkpoint)
        except CheckpointError as error:
            if resume != "auto":
                raise
            unusable = str(error)
        else:
            differences = [] if resume == "force" else _differences(meta, resolved, trainer, resume == "exact")
            if not differences:
                contents = meta, arrays
            elif resume == "exact":
                raise ValueError(
                    f"the run in {run_dir} was made with other options ({'; '.join(differences[:6])}); "
                    "use the same options, or --force to continue with these"
                )
            else:
                unusable = f"it was written with other settings ({'; '.join(differences[:3])})"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DONE).unlink(missing_ok=True)  # the marker goes first: never a stale "done"
    if resume == "restart":
        checkpoint.unlink(missing_ok=True)
    if contents is not None:
        try:
            trainer.restore(checkpoint, force=True, contents=contents)  # compared above
        except CheckpointError as error:  # inconsistent inside; the trainer is left as it was
            if resume != "auto":
                raise
            unusable = str(error)
    if unusable is not None:
        os.replace(checkpoint, run_dir / (CHECKPOINT + ".unreadable"))
        print(f"{run_dir}: checkpoint not used ({unusable}); training from scratch", file=sys.stderr)
        net = build_network(resolved["network"], seed)
        trainer = Trainer(net, **resolved["trainer"], seed=seed, threads=task["threads"])
    resumed_from = len(trainer.history)
    if resumed_from or trainer.epoch_pending:
        config["resumed"] = {"epochs_done": resumed_from, "at": now()}
    else:
        for name in (HISTORY_CSV, HISTORY_JSON, MODEL):
            (run_dir / name).unlink(missing_ok=True)
    atomic_write_text(run_dir / CONFIG, _dumps(config))
    history = trainer.history
    history.config = config

    def save(record: dict[str, Any]) -> None:
        write_history(run_dir, history.records, config)
        if on_epoch is not None:
            on_epoch(record)

    status, message = "complete", ""
    extra: dict[str, Any] = {}
    if resolved.get("diagnostics"):
        extra = {"diagnostics": True, "diagnostics_batch": int(resolved["diagnostics"])}
    if on_start is not None:
        on_start(trainer)
    try:
        trainer.fit(
            train,
            epochs=max(0, int(resolved["epochs"]) - len(history)),
            eval=test,
            progress=bool(task.get("progress", False)),
            callback=save,
            train_metrics=resolved["train_metrics"],
            history=history,
            checkpoint=checkpoint,
            checkpoint_every=task.get("checkpoint_every"),
            **extra,
        )
    except TrainingDiverged as error:
        status, message = "diverged", str(error)
    write_history(run_dir, history.records, config)  # also when it diverged in its first epoch
    if status == "complete" and task.get("save_model"):
        trainer.net.save(run_dir / MODEL)
    done = {
        "status": status,
        "epochs": len(history),
        "seconds": time.perf_counter() - started,
        "finished": now(),
        "final": history.records[-1] if history.records else None,
        "message": message,
    }
    if resumed_from:
        done["resumed_after_epoch"] = resumed_from
    atomic_write_text(run_dir / DONE, _dumps(done))
    return {"run_dir": str(run_dir), **done}


def _differences(meta: dict[str, Any], resolved: dict[str, Any], trainer: Trainer, same_threads: bool) -> list[str]:
    """How the data set, network and trainer options of a checkpoint (``meta``, as read) differ from the
    run's; the thread count counts only when `same_threads`. The checkpoint's history config is the
    config.json of the run that wrote it (:func:`execute`), whose resolved settings name its data set."""
    written = meta["history"].get("config")
    written = written.get("resolved") if isinstance(written, dict) else None
    stored_trainer = dict(meta["trainer"])
    if not same_threads:  # not part of a run's identity
        stored_trainer["threads"] = trainer.threads
    return describe_differences(
        {
            "dataset": written.get("dataset") if isinstance(written, dict) else None,
            "network": meta["network"],
            "trainer": stored_trainer,
        },
        {"dataset": resolved["dataset"], "network": trainer.net.config(), "trainer": trainer.config()},
    )


# ----------------------------------------------------------------------------------------------
# State of a run folder


def run_state(run_dir: Path, resolved: dict[str, Any]) -> tuple[str, str]:
    """``(state, detail)`` with state ``missing``, ``incomplete`` (no ``done.json``: to be redone),
    ``complete``, ``extend`` (made with fewer epochs and otherwise the same settings, with its
    checkpoint: it continues from there), ``mismatch`` (stored options differ) or ``corrupt`` (finished,
    but its files do not read back)."""
    from .aggregate import load_run

    config_file = run_dir / CONFIG
    if not config_file.exists():
        if (run_dir / DONE).exists():
            return "corrupt", f"{run_dir / DONE} exists but {config_file} is missing"
        return ("incomplete", "no config.json") if run_dir.exists() and any(run_dir.iterdir()) else ("missing", "")
    try:
        stored = json.loads(config_file.read_text(encoding="utf-8"))
        stored_resolved = stored["resolved"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        if (run_dir / DONE).exists():
            return "corrupt", f"{config_file} cannot be read: {error}"
        return "incomplete", f"{config_file} cannot be read"
    if not same_settings(stored_resolved, resolved):
        if not isinstance(stored_resolved, dict):
            return "mismatch", "stored settings are not a table"
        differences = "; ".join(describe_differences(comparable(stored_resolved), comparable(resolved))[:6])
        if _longer(stored_resolved, resolved):
            if (run_dir / CHECKPOINT).exists():
                return "extend", differences
            differences += " (no checkpoint.npz to continue from)"
        return "mismatch", differences
    if not (run_dir / DONE).exists():
        return "incomplete", "no done.json"
    try:
        load_run(run_dir, resolved)
    except ValueError as error:
        return "corrupt", str(error)
    return "complete", ""


def _longer(stored: dict[str, Any], resolved: dict[str, Any]) -> bool:
    """Whether the current settings only ask for more epochs than the stored ones: the learning rate
    decays per update, never by the total, so such a run continues from its checkpoint exactly as if
    it had been started with the larger number."""
    if not isinstance(stored.get("epochs"), int) or not isinstance(resolved.get("epochs"), int):
        return False
    return stored["epochs"] < resolved["epochs"] and same_settings({**stored, "epochs": resolved["epochs"]}, resolved)


def plan(experiment: Experiment, out: str | Path) -> list[tuple[Run, str, str]]:
    """Every run of the experiment with its state in ``out``."""
    base = Path(out) / experiment.name
    return [(run, *run_state(base / run.relpath, run.resolved())) for run in experiment.runs()]


# ----------------------------------------------------------------------------------------------
# The whole experiment


@dataclass
class Outcome:
    experiment: Experiment
    directory: Path
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None


def reproduce(
    experiment: Experiment,
    out: str | Path = "results",
    *,
    jobs: int = 1,
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
    data_root: str | None = None,
    download: bool = False,
    command: str | None = None,
    write: Callable[[str], Any] | None = None,
    figures: bool = True,
    backend: str = "local",
    address: str | None = None,
) -> Outcome:
    """Train every run of `experiment` that is not already complete in ``out/<name>/`` (in `jobs`
    processes, `threads` native threads each), then aggregate, plot (unless `figures` is false) and
    write ``report.md``.

    `backend` ``"ray"`` trains the runs as Ray tasks instead (`threads` CPUs each, default 1), on the
    cluster at `address` (``"auto"``: the one this machine belongs to) or, without one, on a Ray
    instance started on this machine for the sweep; see :mod:`.backends`.

    Raises ValueError when a finished run's stored options differ from the current ones, or its
    files are corrupt, unless `force` (then those runs are trained again)."""
    from . import backends

    started = time.perf_counter()
    directory = Path(out) / experiment.name
    outcome = Outcome(experiment, directory)
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be positive, got {jobs}")
    backends.check(backend, address, jobs)
    if backend == "local":
        per_run = threads_per_run(jobs, threads)
    else:  # one CPU per run unless asked: the CPUs of this machine say nothing about the cluster's
        per_run = threads_per_run(1, 1 if threads is None else threads)
    info: dict[str, Any] = {
        "command": command or "(python API)",
        "version": _version(),
        "source": source_revision(),
        "isa": _isa(),
        "date": now(),
        "jobs": jobs,
        "threads": per_run,
        "cores": cores(),
        "python": sys.version.split()[0],
    }
    if backend == "ray":
        info.update(backend="ray", address=address or "local instance")
    if experiment.kind == "complexity":
        from .complexity import write_complexity

        outcome.report = write_complexity(experiment, directory, info)
        outcome.seconds = time.perf_counter() - started
        return outcome

    validate(experiment)
    states = plan(experiment, out)
    blocked = [(run, state, detail) for run, state, detail in states if state in ("mismatch", "corrupt")]
    if blocked and not force:
        lines = [f"  {directory / run.relpath}: {state}: {detail}" for run, state, detail in blocked[:5]]
        more = f"\n  ... and {len(blocked) - 5} more" if len(blocked) > 5 else ""
        raise ConfigError(
            f"{len(blocked)} run(s) in {directory} were made with other settings, or are finished but cannot be read:\n"
            + "\n".join(lines)
            + more
            + "\nUse another --out, delete those folders, or pass --force to train them again."
        )
    for run, _state, _detail in blocked:  # forced: these start from scratch
        (directory / run.relpath / CHECKPOINT).unlink(missing_ok=True)
    todo = [run for run, state, _ in states if state != "complete"]
    outcome.skipped = [run.id for run, state, _ in states if state == "complete"]
    if todo and experiment.dataset != "synthetic":
        load_data(experiment.dataset_spec(), data_root, download)  # fail now if the data are missing
    data_source = describe_data_source(experiment.dataset_spec(), data_root)  # after a download
    if data_source is not None:
        info["data_source"] = data_source
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "experiment.json", _dumps({**info, "settings": experiment.settings()}))

    for run in todo:  # no stale "done" marker; an unfinished run continues from its checkpoint (execute)
        (directory / run.relpath / DONE).unlink(missing_ok=True)
    tasks = [
        (
            run,
            {
                "run_dir": str(directory / run.relpath),
                "resolved": run.resolved(),
                "threads": per_run,
                "data_root": data_root,
                "download": download,
            },
        )
        for run in todo
    ]
    say = write or print
    say(
        f"{experiment.name}: {len(experiment.variants)} variant(s) x {experiment.seeds} seed(s) = "
        f"{len(states)} runs, {len(outcome.skipped)} already complete, {len(todo)} to train "
        f"({experiment.dataset}, {experiment.epochs} epochs; {parallelism(info)}) -> {directory}"
    )
    if tasks:
        _run_all(tasks, experiment, outcome, jobs, progress, say, backend, address)
    outcome.seconds = time.perf_counter() - started
    info["seconds"] = outcome.seconds
    info["trained"] = len(outcome.trained)
    info["skipped"] = len(outcome.skipped)
    if outcome.failed:
        return outcome
    from .report import write_outputs

    outcome.report = write_outputs(experiment, directory, info, figures=figures)
    return outcome


def parallelism(info: dict[str, Any]) -> str:
    """How the runs were spread, as the start line and the report say it."""
    if info.get("backend") == "ray":
        return f"Ray tasks on {info['address']}, {info['threads']} thread(s) each"
    return f"{info.get('jobs', 1)} job(s) x {info.get('threads', '?')} thread(s)"


def _version() -> str:
    from .. import __version__

    return __version__


def _isa() -> str:
    from .._native import isa

    return isa


def _summary_line(run: Run, result: dict[str, Any]) -> str:
    final = result.get("final") or {}
    acc = final.get("test_accuracy")
    text = f"{run.id}: "
    if result["status"] == "diverged":
        text += f"DIVERGED after {result['epochs']} epoch(s)"
    else:
        text += f"test accuracy {100 * acc:.2f}%" if acc is not None else "done"
    return text + f" ({result['epochs']} epochs, {result['seconds']:.1f} s)"


def _run_all(
    tasks: list[tuple[Run, dict[str, Any]]],
    experiment: Experiment,
    outcome: Outcome,
    jobs: int,
    progress: bool,
    say: Callable[[str], Any],
    backend: str = "local",
    address: str | None = None,
) -> None:
    from tqdm.auto import tqdm

    from . import backends

    total = len(tasks) + len(outcome.skipped)
    bar = tqdm(
        total=total,
        initial=len(outcome.skipped),
        unit="run",
        desc=experiment.name,
        disable=None if progress else True,
        dynamic_ncols=True,
        file=sys.stderr,
    )  # None: off without a tty
    line = bar.write if progress else say

    def finished(run: Run, result: dict[str, Any] | None, error: str | None) -> None:
        if error is not None:
            outcome.failed.append((run.id, error))
            line(f"{run.id}: FAILED: {error}")
        else:
            assert result is not None
            outcome.trained.append(run.id)
            if result["status"] == "diverged":
                outcome.diverged.append(run.id)
            line(_summary_line(run, result))
        bar.update(1)

    def status(text: str) -> None:
        bar.set_postfix_str(text, refresh=True)

    try:
        if backend == "ray":
            backends.run_ray(tasks, finished, status if progress else None, address=address)
        else:
            backends.run_local(tasks, jobs, finished, status if progress else None)
    finally:
        bar.close()
