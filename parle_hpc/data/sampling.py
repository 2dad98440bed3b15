"""Per-replica minibatch streams (the spec's sampling and ``frac`` sharding)."""

from __future__ import annotations

import torch

# Offsets that keep the sampling stream apart from the seed + rank used for initialisation.
_DATA_SEED_OFFSET = 1_000_003
_SHARD_SEED_OFFSET = 2_000_003


class ReplicaBatches:
    """An endless stream of minibatch index tensors for replica ``rank`` of ``size``.

    With ``frac == 1`` the replica draws from the whole training set, reshuffled each
    pass with its own generator (seed ``seed + rank``). With ``frac < 1`` replica ``a``
    sees a contiguous shard of ``frac * N`` examples starting at ``((a / n) mod 1) * N``
    of one fixed shuffle (wrapping around), shuffled each pass likewise. Passes drop the
    last incomplete batch, so every minibatch has ``batch_size`` examples and
    ``batches_per_epoch = len(shard) // batch_size`` is the spec's ``B``.
    """

    def __init__(self, n_examples: int, batch_size: int, *, rank: int = 0, size: int = 1,
                 seed: int = 0, frac: float = 1.0) -> None:
        if not 0 < frac <= 1:
            raise ValueError(f"frac must be in (0, 1], got {frac}")
        if frac < 1:
            fixed = torch.randperm(n_examples,
                                   generator=torch.Generator().manual_seed(seed + _SHARD_SEED_OFFSET))
            length = int(frac * n_examples)
            start = int(((rank / size) % 1.0) * n_examples)
            self.indices = fixed[(start + torch.arange(length)) % n_examples]
        else:
            self.indices = torch.arange(n_examples)
        self.batch_size = batch_size
        self.batches_per_epoch = len(self.indices) // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"batch size {batch_size} exceeds the {len(self.indices)} "
                             f"examples this replica sees")
        self.generator = torch.Generator().manual_seed(seed + rank + _DATA_SEED_OFFSET)
        self._order = torch.empty(0, dtype=torch.int64)
        self._position = 0
        self.passes = 0

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self._position + self.batch_size > len(self._order):
            self._order = self.indices[torch.randperm(len(self.indices), generator=self.generator)]
            self._position = 0
            self.passes += 1
        batch = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self._order.clone(),
                "position": self._position, "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].clone()
        self._position = int(state["position"])
        self.passes = int(state["passes"])
