"""The training order: micro-batches of one task and like lengths, in a shuffled order.

Why both: a micro-batch of like lengths wastes little on padding; but sorting whole mega-batches by
length, as transformers' `group_by_length` does, puts every APA row (its prompt is ~330 tokens
longer than MDD's) before every MDD row of the mega-batch, so most optimizer steps saw one task
only (74 of 79 a paper epoch; tests/training/test_sampler.py measures it). Here each task's rows are
grouped by length on their own, cut into micro-batches, and the micro-batches are shuffled, so
an optimizer step draws its micro-batches from both tasks as random sampling would.

The order depends only on (lengths, tasks, micro-batch size, seed, epoch): not on the number of
processes, so N DDP processes, each taking every N-th micro-batch (accelerate's
BatchSamplerShard), train exactly the micro-batches one process would; and not on any global
RNG, so a resumed run draws the same epoch as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

POOL_BATCHES = 64  # micro-batches a length-sorted pool holds (512 rows at batch 8): transformers'
# mega-batch of the paper recipe holds ~600 rows a task, so the padding stays what it was


def micro_batches(lengths, tasks, batch_size: int, generator: torch.Generator,
                  pool_batches: int = POOL_BATCHES) -> list[list[int]]:
    """One epoch's micro-batches (row indices), in training order: every one full but the last.

    Each task's rows in a random order, cut into pools of `pool_batches` micro-batches, each pool
    sorted by length (longest first) and the task's rows cut into micro-batches; the micro-batches
    of all tasks shuffled, the longest first (an out-of-memory shows at the first step). A
    task's last rows short of a micro-batch are pooled with the other tasks' (so at most one
    micro-batch mixes tasks); any rows short of a full micro-batch come last."""
    if len(lengths) != len(tasks):
        raise ValueError(f"{len(lengths)} lengths but {len(tasks)} task labels")
    if batch_size < 1 or pool_batches < 1:
        raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
    pool = pool_batches * batch_size
    batches, leftover = [], []
    for task in sorted(set(tasks)):
        rows = [i for i, t in enumerate(tasks) if t == task]
        rows = [rows[j] for j in torch.randperm(len(rows), generator=generator).tolist()]
        ordered = [i for p in range(0, len(rows), pool)
                   for i in sorted(rows[p:p + pool], key=lambda i: lengths[i], reverse=True)]
        full = len(ordered) - len(ordered) % batch_size
        batches += [ordered[b:b + batch_size] for b in range(0, full, batch_size)]
        leftover += ordered[full:]
    leftover.sort(key=lambda i: (tasks[i], -lengths[i]))
    full = len(leftover) - len(leftover) % batch_size
    batches += [leftover[b:b + batch_size] for b in range(0, full, batch_size)]
    last = leftover[full:]

    batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches + ([last] if last else [])


class TaskLengthSampler(Sampler[int]):
    """Row indices in `micro_batches` order (the DataLoader cuts them every `batch_size`),
    reshuffled each epoch from `seed + epoch` (the trainer calls set_epoch)."""

    def __init__(self, lengths, tasks, batch_size: int, seed: int, pool_batches: int = POOL_BATCHES):
        self.lengths, self.tasks = list(lengths), list(tasks)
        self.batch_size, self.seed, self.pool_batches = batch_size, seed, pool_batches
        self.epoch = 0
        micro_batches(self.lengths, self.tasks, batch_size, torch.Generator(), pool_batches)  # bad input fails here

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return micro_batches(self.lengths, self.tasks, self.batch_size, generator, self.pool_batches)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter([i for batch in self.batches() for i in batch])
