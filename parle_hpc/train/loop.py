"""The training loop: L inner steps, the sync inside ``opt.step()``, reference evaluation."""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from ..checkpoint import save_checkpoint
from ..comm import Communicator
from ..config import RunConfig
from ..data import ReplicaBatches, load_dataset
from ..models import build, default_weight_decay
from ..optim import DataParallelSGD, Parle, lr_at_epoch
from .evaluate import average_buffers, evaluate, recompute_bn
from .metrics import MetricsWriter, spread

log = logging.getLogger("parle_hpc.train")


def select_device(name: str, local_rank: int, local_size: int = 1,
                  oversubscribe: bool = False) -> torch.device:
    """``auto``: GPU ``local_rank`` when GPUs exist, else CPU.

    More ranks on a node than GPUs is an error (usually a launcher mistake) unless
    ``oversubscribe`` is set; then rank ``r`` shares GPU ``r % count``.
    """
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no GPU is visible (check CUDA_VISIBLE_DEVICES)")
    count = torch.cuda.device_count()
    if max(local_rank + 1, local_size) > count and not oversubscribe:
        raise RuntimeError(f"{local_size} ranks on this node but only {count} GPU(s) visible: "
                           "start one rank per GPU, set train.gpu_oversubscribe=true to share "
                           "GPUs, or train.device=cpu")
    index = local_rank % count
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


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
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        comm.barrier()

        self.data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.download)
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
        mode = self.cfg.parle.bn
        if mode == "recompute":
            recompute_bn(ref_model, self.data.train, self.comm, self.cfg.data.eval_batch_size,
                         self.device)
        elif mode == "average":
            average_buffers(ref_model, self.comm)
        return evaluate(ref_model, self.data.val, self.comm, self.cfg.data.eval_batch_size,
                        self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        cfg, comm, opt = self.cfg, self.comm, self.opt
        E, spe = cfg.train.epochs, self.steps_per_epoch
        self.say(f"parle_hpc: {cfg.optim.method} | model {cfg.model.name} | data {cfg.data.name} "
                 f"({len(self.data.train)} train / {len(self.data.val)} val) | {comm.size} "
                 f"replica(s) over {comm.name} on {self.device} | L={self.L} "
                 f"B={self.sampler.batches_per_epoch} | {E} epochs x {spe} minibatches/replica")
        train_wall = 0.0
        comm_s = compute_s = 0.0
        window = {"loss": 0.0, "err": 0.0, "n": 0, "comm": 0.0, "wall": 0.0}
        syncs = 0
        last_train_error = math.nan  # mean over replicas, from the last logged sync
        bar = self._progress(E * spe)
        started = time.perf_counter()
        for epoch in range(E):
            lr = self._lr(epoch)
            opt.param_groups[0]["lr"] = lr
            self.model.train()
            for _ in range(spe):
                if cfg.train.max_syncs and syncs >= cfg.train.max_syncs:
                    break
                t0 = time.perf_counter()
                c0 = comm.stats.total_seconds
                idx = next(self.sampler)[self._share]
                x = self.data.train.images[idx]
                if self.data.augment is not None:
                    x = self.data.augment(x, self.sampler.generator)
                x = x.to(self.device, non_blocking=True)
                y = self.data.train.labels[idx].to(self.device, non_blocking=True)
                out = self.model(x)
                loss = F.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                window["loss"] += float(loss.detach())
                window["err"] += float((out.argmax(1) != y).float().mean()) * 100.0
                window["n"] += 1
                window["comm"] += comm.stats.total_seconds - c0
                window["wall"] += time.perf_counter() - t0
                if bar is not None:
                    bar.update(1)
                if not opt.synced:
                    continue
                syncs += 1
                if syncs % cfg.train.log_every:
                    continue
                train_wall += window["wall"]
                comm_s += window["comm"]
                compute_s += window["wall"] - window["comm"]
                gamma, rho = opt.couplings()
                (loss_m, loss_s), (err_m, err_s), (dist_m, _) = spread(
                    comm, [window["loss"] / window["n"], window["err"] / window["n"],
                           opt.distance_to_reference()])
                record = {"type": "sync", "sync": syncs, "step": opt.steps, "outer_step": opt.outer_step,
                          "epoch": opt.steps / spe, "wall_s": train_wall, "compute_s": compute_s,
                          "comm_s": comm_s, "lr": lr, "gamma": gamma, "rho": rho,
                          "train_loss": loss_m, "train_loss_std": loss_s,
                          "train_error": err_m, "train_error_std": err_s, "dist_to_ref": dist_m}
                self.metrics.write(record)
                last_train_error = err_m
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_m:.3f}", err=f"{err_m:.1f}%", refresh=False)
                window = {"loss": 0.0, "err": 0.0, "n": 0, "comm": 0.0, "wall": 0.0}
            last = epoch + 1 == E
            if (epoch + 1) % cfg.train.eval_every == 0 or last:
                val = self.evaluate_reference()
                row = {"type": "val", "epoch": epoch + 1, "step": opt.steps, "wall_s": train_wall,
                       "elapsed_s": time.perf_counter() - started, "lr": lr,
                       "val_loss": val["loss"], "val_error": val["error"],
                       "train_error": last_train_error}
                self.metrics.write(row)
                self.history.append(row)
                line = (f"epoch {epoch + 1:>3}/{E}  lr {lr:<7g} train err {row['train_error']:6.2f}%  "
                        f"reference val err {val['error']:6.2f}%  loss {val['loss']:.4f}  "
                        f"[{train_wall:7.1f}s, comm {comm_s:5.1f}s]")
                if bar is not None:
                    bar.write(line)
                else:
                    self.say(line)
            if cfg.checkpoint.enabled and ((epoch + 1) % cfg.checkpoint.every_epochs == 0 or last):
                self.checkpoint(epoch + 1, syncs)
        if bar is not None:
            bar.close()
        self.metrics.close()
        summary = {"epochs": E, "final_val_error": self.history[-1]["val_error"],
                   "best_val_error": min(h["val_error"] for h in self.history),
                   "train_wall_s": train_wall, "comm_s": comm_s, "compute_s": compute_s,
                   "elapsed_s": time.perf_counter() - started, "replicas": comm.size,
                   "syncs": syncs, "out_dir": str(self.out_dir)}
        return summary

    def checkpoint(self, epoch: int, syncs: int) -> Path | None:
        path = self.out_dir / "checkpoints" / f"ckpt-step{self.opt.steps:09d}.h5"
        meta = {"step": self.opt.steps, "epoch": epoch, "sync": syncs, "model": self.cfg.model.name,
                "method": self.cfg.optim.method, "config": self.cfg.to_dict()}
        written = save_checkpoint(path, comm=self.comm, model=self.model, opt=self.opt,
                                  reference_model=self.reference_model, meta=meta)
        if written is not None:
            old = sorted(written.parent.glob("ckpt-*.h5"))[:-self.cfg.checkpoint.keep]
            for stale in old:
                stale.unlink()
            latest = written.parent / "latest"
            tmp = written.parent / ".latest.tmp"
            tmp.write_text(written.name + "\n")
            os.replace(tmp, latest)
        return written

    def _progress(self, total: int):
        if not (self.is_root and self.cfg.train.progress and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="step", desc="replica 0", dynamic_ncols=True, leave=False)


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
