"""The training loop: L inner steps, the sync inside ``opt.step()``, reference evaluation."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from ..checkpoint import (CheckpointError, capture_replica, latest_valid_checkpoint,
                          list_checkpoints, read_attrs, reference_arrays,
                          remove_stale_temporaries, restore_replica,
                          save_checkpoint, validate_checkpoint)
from ..comm import Communicator
from ..config import RunConfig
from ..data import ReplicaBatches, load_dataset
from ..models import build, default_weight_decay
from ..optim import DataParallelSGD, Parle, lr_at_epoch
from . import EXIT_NONFINITE, EXIT_REQUEUE  # noqa: F401 - re-exported for the CLI
from .evaluate import average_buffers, evaluate, recompute_bn
from .metrics import MetricsWriter, spread

log = logging.getLogger("parle_hpc.train")


def select_device(name: str, local_rank: int, local_size: int = 1,
                  oversubscribe: bool = False) -> torch.device:
    """``auto``: GPU ``local_rank`` when GPUs exist, else CPU.

    More ranks on a node than GPUs is an error (usually a launcher mistake) unless
    ``oversubscribe`` is set; then rank ``r`` shares GPU ``r % count``. Under
    ``srun --gpus-per-task=G`` (``SLURM_GPUS_PER_TASK``) SLURM binds each task to its own
    GPUs, so a rank that sees no more than ``G`` GPUs takes the first of them.
    """
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no GPU is visible (check CUDA_VISIBLE_DEVICES)")
    count = torch.cuda.device_count()
    per_task = _slurm_gpus_per_task()
    if per_task and count <= per_task:  # this task's own GPU(s), bound by SLURM
        torch.cuda.set_device(0)
        return torch.device("cuda", 0)
    if max(local_rank + 1, local_size) > count and not oversubscribe:
        raise RuntimeError(f"{local_size} ranks on this node but only {count} GPU(s) visible: "
                           "start one rank per GPU, set train.gpu_oversubscribe=true to share "
                           "GPUs, or train.device=cpu")
    index = local_rank % count
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _slurm_gpus_per_task() -> int:
    """``G`` of ``--gpus-per-task=[type:]G`` from the step's environment, else 0."""
    value = os.environ.get("SLURM_GPUS_PER_TASK", "").rsplit(":", 1)[-1]
    return int(value) if value.isdigit() else 0


def set_threads(threads: int, local_size: int) -> int:
    """Split the cores this process may use evenly over the ranks on the node."""
    if threads == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // max(1, local_size))
    torch.set_num_threads(threads)
    return threads


class Trainer:
    """Runs one configured method on this rank's replica. Build with a communicator."""

    def __init__(self, cfg: RunConfig, comm: Communicator, device: torch.device,
                 console=sys.stdout) -> None:
        self.cfg, self.comm, self.device = cfg, comm, device
        self.is_root = comm.rank == 0
        self.console = console if self.is_root else None
        self.out_dir = Path(cfg.out_dir)
        if self.is_root:
            (self.out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            for stale in remove_stale_temporaries(self.out_dir / "checkpoints"):
                log.warning("removed %s, left by an interrupted checkpoint write", stale)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        comm.barrier()

        if cfg.data.download and comm.size > 1:
            # One rank stages the files, the others read them once they are there.
            if comm.rank == 0:
                load_dataset(cfg.data.name, cfg.data.root, True)
            comm.barrier()
        self.data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.download and comm.rank == 0)
        seed = cfg.train.seed + (comm.rank if cfg.parle.init == "independent" else 0)
        torch.manual_seed(seed)
        self.model = build(cfg.model.name, self.data.num_classes, cfg.model.dropout).to(device)
        if cfg.parle.init == "same":  # broadcast rank 0's initial weights
            flat = torch.nn.utils.parameters_to_vector(self.model.parameters()).contiguous()
            comm.broadcast_(flat, root=0)
            torch.nn.utils.vector_to_parameters(flat, self.model.parameters())
        self.L = cfg.effective_L
        wd = cfg.optim.weight_decay
        wd = default_weight_decay(cfg.model.name) if wd is None else wd
        self.data_parallel = cfg.optim.method == "dp-sgd"
        if self.data_parallel:
            # One global minibatch per step, drawn identically on every rank (same seed),
            # each rank taking its contiguous share.
            if cfg.data.batch_size % comm.size:
                raise ValueError(f"dp-sgd splits data.batch_size={cfg.data.batch_size} over "
                                 f"{comm.size} ranks: make it a multiple of {comm.size}")
            self.sampler = ReplicaBatches(len(self.data.train), cfg.data.batch_size, rank=0,
                                          size=1, seed=cfg.train.seed, frac=cfg.data.frac)
            share = cfg.data.batch_size // comm.size
            self._share = slice(comm.rank * share, (comm.rank + 1) * share)
            self.opt = DataParallelSGD(self.model.parameters(), comm=comm, lr=self._lr(0),
                                       momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov,
                                       weight_decay=wd)
        else:
            self.sampler = ReplicaBatches(len(self.data.train), cfg.data.batch_size,
                                          rank=comm.rank, size=comm.size, seed=cfg.train.seed,
                                          frac=cfg.data.frac)
            self._share = slice(None)
            self.opt = self._parle(cfg, wd)
        self.reference_model = copy.deepcopy(self.model)
        self.metrics = MetricsWriter(self.out_dir / "metrics.jsonl", self.is_root)
        self.history: list[dict[str, Any]] = []
        self._reference_step = -1
        self._tb = None
        self._started = time.perf_counter()

    def _parle(self, cfg: RunConfig, wd: float) -> Parle:
        return Parle(
            self.model.parameters(), comm=self.comm, lr=self._lr(0), inner_lr=cfg.optim.inner_lr,
            L=self.L, gamma0=cfg.parle.gamma0, gamma_max=cfg.parle.gamma_max,
            rho0=cfg.effective_rho0, rho_max=cfg.parle.rho_max, scoping=cfg.parle.scoping,
            batches_per_epoch=self.sampler.batches_per_epoch, alpha=cfg.parle.alpha,
            momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov, weight_decay=wd)

    # ------------------------------------------------------------------ helpers
    def _lr(self, epoch: int) -> float:
        schedule = self.cfg.optim.lr_schedule
        return lr_at_epoch(schedule, epoch) if schedule else self.cfg.optim.lr

    def say(self, text: str) -> None:
        if self.console is not None:
            print(text, file=self.console, flush=True)

    @property
    def steps_per_epoch(self) -> int:
        """Minibatches per replica per epoch: B outer steps of max(L, 1) minibatches."""
        return self.sampler.batches_per_epoch * max(self.L, 1)

    def evaluate_reference(self) -> dict[str, float]:
        """Copy the reference into the evaluation model, fix its BN statistics, evaluate."""
        ref_model = self.reference_model
        with torch.no_grad():
            for p, r in zip(ref_model.parameters(), self.opt.reference()):
                p.copy_(r)
            for b_ref, b in zip(ref_model.buffers(), self.model.buffers()):
                b_ref.copy_(b)
        self._reference_step = self.opt.steps
        mode = self.cfg.parle.bn
        if mode == "recompute":
            recompute_bn(ref_model, self.data.train, self.comm, self.cfg.data.eval_batch_size,
                         self.device)
        elif mode == "average":
            average_buffers(ref_model, self.comm)
        return evaluate(ref_model, self.data.val, self.comm, self.cfg.data.eval_batch_size,
                        self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: str | None = None, stop_flag: StopFlag | None = None) -> dict[str, Any]:
        """Train to the end (or to a stop request). ``resume``: ``auto`` or a checkpoint path.

        Raises :class:`StopRequested` after checkpointing on a signal or the wall-time
        budget, and :class:`NonFiniteError` when a replica diverges; both on every rank.
        ``stop_flag``: handlers the caller installed earlier (``parle-train`` does so at
        start-up, so a signal during data loading or rendezvous is not lost); by default
        ``fit`` installs its own for ``checkpoint.signals`` and restores the old ones.
        """
        cfg, comm, opt = self.cfg, self.comm, self.opt
        E, spe = cfg.train.epochs, self.steps_per_epoch
        total = E * spe
        self.say(f"parle_hpc: {cfg.optim.method} | model {cfg.model.name} | data {cfg.data.name} "
                 f"({len(self.data.train)} train / {len(self.data.val)} val) | {comm.size} "
                 f"replica(s) over {comm.name} on {self.device} | L={self.L} "
                 f"B={self.sampler.batches_per_epoch} | {E} epochs x {spe} minibatches/replica")
        p = Progress()
        if resume:
            self._resume(resume, p)
        window = _Window()
        bar = self._progress(total, p.step)
        self._started = time.perf_counter()
        own_flag = stop_flag is None
        stop_signal = StopFlag(cfg.checkpoint.signals) if own_flag else stop_flag
        try:
            while p.step < total:
                epoch = p.step // spe
                lr = self._lr(epoch)
                opt.param_groups[0]["lr"] = lr
                self.model.train()
                t0 = time.perf_counter()
                c0 = comm.stats.total_seconds
                idx = next(self.sampler)
                x = self.data.train.images[idx]
                if self.data.augment is not None:
                    # dp-sgd: augment the global batch, then take this rank's share, so the
                    # ranks together compute exactly what one process would on the whole batch
                    x = self.data.augment(x, self.sampler.generator)
                x = x[self._share].to(self.device, non_blocking=True)
                y = self.data.train.labels[idx[self._share]].to(self.device, non_blocking=True)
                with self._autocast():
                    out = self.model(x)
                    loss = F.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                if cfg.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                opt.step()
                p.step += 1
                window.add(float(loss.detach()), float((out.argmax(1) != y).float().mean()) * 100.0)
                if bar is not None:
                    bar.update(1)
                stop_reason = None
                if opt.synced:
                    p.syncs += 1
                    stop_reason = self._control(stop_signal, p)  # one small collective
                # Clocks advance every minibatch (not only at logged syncs), so validation
                # rows and checkpoints carry the wall-clock up to this step.
                step_comm = comm.stats.total_seconds - c0
                step_wall = time.perf_counter() - t0
                p.train_wall += step_wall
                p.comm_s += step_comm
                p.compute_s += step_wall - step_comm
                if opt.synced:
                    if p.syncs % cfg.train.log_every == 0:
                        self._log_sync(p, window, lr, bar)
                        window = _Window()
                    if stop_reason is not None:
                        path = self.checkpoint(p)
                        raise StopRequested(stop_reason, path)
                ended = bool(cfg.train.max_syncs) and p.syncs >= cfg.train.max_syncs
                if ended:
                    total = p.step  # max_syncs: this step is the last one
                if p.step % spe == 0 or ended:
                    self._end_of_epoch(p, epoch, lr, last=p.step >= total, bar=bar)
        finally:
            if self._tb is not None:
                self._tb.close()
            if own_flag:
                stop_signal.restore()
            if bar is not None:
                bar.close()
            self.metrics.close()
        return {"epochs": E, "final_val_error": self.history[-1]["val_error"],
                "best_val_error": min(h["val_error"] for h in self.history),
                "train_wall_s": p.train_wall, "comm_s": p.comm_s, "compute_s": p.compute_s,
                "elapsed_s": time.perf_counter() - self._started, "replicas": comm.size,
                "syncs": p.syncs, "steps": p.step, "out_dir": str(self.out_dir)}

    def _control(self, stop_signal: StopFlag, p: Progress) -> str | None:
        """Agree at a sync on stop requests and non-finite replicas (one allreduce)."""
        n = self.comm.size
        flags = torch.zeros(n + 1, dtype=torch.float64)
        budget = self.cfg.checkpoint.walltime_s
        elapsed = time.perf_counter() - self._started
        local_stop = stop_signal.name or (
            "wall-time budget" if budget and elapsed >= budget - self.cfg.checkpoint.walltime_margin_s
            else None)
        flags[0] = 1.0 if local_stop else 0.0
        flags[1 + self.comm.rank] = 0.0 if bool(torch.isfinite(self.opt.flat_params).all()) else 1.0
        self.comm.allreduce_sum_(flags)
        bad = [k for k in range(n) if flags[1 + k] > 0]
        if bad:
            raise NonFiniteError(f"replica(s) {', '.join(map(str, bad))} hold NaN/Inf weights at "
                                 f"step {p.step} (sync {p.syncs}); the last good checkpoint is "
                                 f"kept in {self.out_dir / 'checkpoints'}. Lower the learning "
                                 "rate or check the data.")
        if flags[0] > 0:
            return local_stop or "stop requested by another rank"
        return None

    def _log_sync(self, p: Progress, w: _Window, lr: float, bar) -> None:
        opt = self.opt
        gamma, rho = opt.couplings()
        (loss_m, loss_s), (err_m, err_s), (dist_m, _) = spread(
            self.comm, [w.loss / max(w.n, 1), w.err / max(w.n, 1), opt.distance_to_reference()])
        record = {
            "type": "sync", "sync": p.syncs, "step": p.step, "outer_step": opt.outer_step,
            "epoch": p.step / self.steps_per_epoch, "wall_s": p.train_wall,
            "compute_s": p.compute_s, "comm_s": p.comm_s, "lr": lr, "gamma": gamma, "rho": rho,
            "train_loss": loss_m, "train_loss_std": loss_s, "train_error": err_m,
            "train_error_std": err_s, "dist_to_ref": dist_m}
        self.metrics.write(record)
        self.tensorboard("sync", record, p.step)
        p.last_train_error = err_m
        if bar is not None:
            bar.set_postfix(loss=f"{loss_m:.3f}", err=f"{err_m:.1f}%", refresh=False)

    def _end_of_epoch(self, p: Progress, epoch: int, lr: float, last: bool, bar) -> None:
        cfg = self.cfg
        if (epoch + 1) % cfg.train.eval_every == 0 or last:
            val = self.evaluate_reference()
            row = {"type": "val", "epoch": epoch + 1, "step": p.step, "wall_s": p.train_wall,
                   "elapsed_s": p.elapsed_before + time.perf_counter() - self._started, "lr": lr,
                   "val_loss": val["loss"], "val_error": val["error"],
                   "train_error": p.last_train_error}
            if cfg.train.eval_replicas:
                row["replica_val_error"] = self.evaluate_replicas()
            self.metrics.write(row)
            self.tensorboard("val", row, p.step)
            self.history.append(row)
            line = (f"epoch {epoch + 1:>3}/{cfg.train.epochs}  lr {lr:<7g} train err "
                    f"{p.last_train_error:6.2f}%  reference val err {val['error']:6.2f}%  "
                    f"loss {val['loss']:.4f}  [{p.train_wall:7.1f}s, comm {p.comm_s:5.1f}s]")
            if bar is not None:
                bar.write(line)
            else:
                self.say(line)
        if cfg.checkpoint.enabled and ((epoch + 1) % cfg.checkpoint.every_epochs == 0 or last):
            try:
                self.checkpoint(p)
            except CheckpointError as exc:  # e.g. a full disk: warn, keep training
                if self.is_root:
                    log.warning("%s", exc)

    def evaluate_replicas(self) -> list[float]:
        """Validation error (%) of every replica's own weights and BN statistics, in rank
        order (each rank evaluates its replica on the whole validation set)."""
        from ..comm import Single

        mine = evaluate(self.model, self.data.val, Single(), self.cfg.data.eval_batch_size,
                        self.device)["error"]
        errors = torch.zeros(self.comm.size, dtype=torch.float64)
        errors[self.comm.rank] = mine
        self.comm.allreduce_sum_(errors)
        return errors.tolist()

    def _autocast(self):
        if self.cfg.train.bf16 and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def tensorboard(self, kind: str, record: dict[str, Any], step: int) -> None:
        """Mirror a metrics record to TensorBoard (rank 0, when train.tensorboard is on)."""
        if not (self.cfg.train.tensorboard and self.is_root):
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError("train.tensorboard=true needs the tensorboard package "
                                   "(pip install tensorboard)") from exc
            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        for key, value in record.items():
            if key not in ("type", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                self._tb.add_scalar(f"{kind}/{key}", value, step)
        self._tb.flush()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, p: Progress) -> Path:
        """Write a checkpoint of every replica and the reference (collective)."""
        cfg = self.cfg
        path = self.out_dir / "checkpoints" / f"ckpt-step{p.step:09d}.h5"
        if self._reference_step != p.step:  # the reference's BN statistics as evaluated
            self.evaluate_reference()
        meta = {"step": p.step, "epoch": p.step / self.steps_per_epoch, "sync": p.syncs,
                "model": cfg.model.name, "method": cfg.optim.method, "config": cfg.to_dict(),
                "loop": p.to_json(time.perf_counter() - self._started)}
        save_checkpoint(path, comm=self.comm,
                        replica=capture_replica(self.model, self.opt, self.sampler),
                        reference=reference_arrays(self.reference_model) if self.is_root else {},
                        meta=meta, parallel=cfg.checkpoint.parallel)
        if self.is_root:
            keep = cfg.checkpoint.keep
            for stale in list_checkpoints(path.parent)[keep:]:
                stale.unlink()
            tmp = path.parent / ".latest.tmp"
            tmp.write_text(path.name + "\n")
            os.replace(tmp, path.parent / "latest")
        return path

    def _resume(self, spec: str, p: Progress) -> None:
        """Rank 0 picks the checkpoint, every rank restores its own replica from it."""
        choice: tuple[str | None, str | None] = (None, None)
        if self.is_root:
            if spec == "auto":
                found = latest_valid_checkpoint(self.out_dir / "checkpoints")
                choice = (str(found) if found else None, None)
            else:
                reason = validate_checkpoint(spec)
                choice = (spec, None) if reason is None else (None, f"cannot resume from {spec}: {reason}")
        path, error = self.comm.broadcast_object(choice, root=0)
        if error:
            raise CheckpointError(error)
        if path is None:
            self.say(f"resume: no valid checkpoint in {self.out_dir / 'checkpoints'}; starting fresh")
            return
        attrs = read_attrs(path)
        if int(attrs["n_replicas"]) != self.comm.size:
            raise CheckpointError(f"{path} holds {attrs['n_replicas']} replicas but this job has "
                                  f"{self.comm.size} ranks: restart with -np {attrs['n_replicas']}")
        for key, mine in (("model", self.cfg.model.name), ("method", self.cfg.optim.method)):
            if attrs[key] != mine:
                raise CheckpointError(f"{path} was written by a {key}={attrs[key]!r} run, not {mine!r}")
        restore_replica(path, self.comm.rank, self.model, self.opt, self.sampler)
        p.load_json(attrs["loop"])
        if self.is_root:
            self.history = self.metrics.truncate_after(p.step)
        self.say(f"resumed from {path} at step {p.step} (sync {p.syncs})")

    def _progress(self, total: int, initial: int = 0):
        if not (self.is_root and self.cfg.train.progress and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="step", desc="replica 0",
                    dynamic_ncols=True, leave=False)


class StopRequested(Exception):
    """A signal or the wall-time budget stopped the run after writing ``path``."""

    def __init__(self, reason: str, path: Path) -> None:
        super().__init__(f"{reason}: checkpoint {path} written")
        self.reason, self.path = reason, path


class NonFiniteError(RuntimeError):
    """A replica's weights became NaN/Inf (raised on every rank at the same sync)."""


@dataclass
class Progress:
    """Loop counters, saved in every checkpoint so a resumed run continues its clocks."""

    step: int = 0
    syncs: int = 0
    train_wall: float = 0.0
    comm_s: float = 0.0
    compute_s: float = 0.0
    last_train_error: float = math.nan
    elapsed_before: float = 0.0

    def to_json(self, elapsed: float) -> str:
        d = dataclasses.asdict(self)
        d["elapsed_before"] = self.elapsed_before + elapsed
        return json.dumps(d)

    def load_json(self, text: str) -> None:
        for key, value in json.loads(text).items():
            setattr(self, key, value)


@dataclass
class _Window:
    """Sums over the minibatches since the last logged sync."""

    loss: float = 0.0
    err: float = 0.0
    n: int = 0

    def add(self, loss: float, err: float) -> None:
        self.loss += loss
        self.err += err
        self.n += 1


class StopFlag:
    """Signal handlers that only record the signal; the loop acts at the next sync."""

    def __init__(self, names: list[str]) -> None:
        self.name: str | None = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in names:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def summary_table(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """The final table rank 0 prints."""
    lines = ["", "epoch  reference val error  val loss  train error  wall-clock (s)",
             "-----  -------------------  --------  -----------  --------------"]
    for h in history:
        lines.append(f"{h['epoch']:>5}  {h['val_error']:>18.2f}%  {h['val_loss']:>8.4f}  "
                     f"{h['train_error']:>10.2f}%  {h['wall_s']:>14.1f}")
    frac = summary["comm_s"] / summary["train_wall_s"] if summary["train_wall_s"] else 0.0
    lines += ["", f"final reference val error {summary['final_val_error']:.2f}% "
              f"(best {summary['best_val_error']:.2f}%) with {summary['replicas']} replica(s), "
              f"{summary['syncs']} syncs; training {summary['train_wall_s']:.1f}s of which "
              f"communication {summary['comm_s']:.1f}s ({100 * frac:.1f}%)"]
    return "\n".join(lines)
