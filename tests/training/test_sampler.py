"""pronounce.training.sampler: micro-batches of one task and like lengths, shuffled, so an optimizer step
mixes the tasks as random sampling would, at the padding of length grouping; the order the same
under any number of processes and on resume."""

import math
import wave

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from conftest import BUNDLED
from torch.utils.data import BatchSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from pronounce.training.sampler import TaskLengthSampler, micro_batches

BATCH, ACCUM = 8, 8  # the paper recipe
UTTERANCES = 2500  # speechocean762's train split
APA_EXTRA = 330  # the APA prompt's tokens beyond the MDD prompt's (real tokenizer, ../shared/reference)
MDD_TEXT = 60  # chat tokens, control token and the MDD prompt (real tokenizer, about)
APA_ANSWER = 30  # {'accuracy': 8, 'fluency': 9, 'prosodic': 8, 'total': 8} and <|end|>


def paper_lengths(seed=0):
    """(lengths, tasks) of the paper run's training rows, the bundled corpus scaled up: 2,500
    utterances drawn (with replacement) from the bundled train clips, each an APA and an MDD row of
    length text + answer + audio tokens (one per 80 ms, as train.with_lengths counts)."""
    text = dict(line.split("\t", 1) for line in (BUNDLED / "train/text").read_text().splitlines() if line)
    clips = []
    for line in (BUNDLED / "train/wav.scp").read_text().splitlines():
        utt, rel = line.split("\t")
        with wave.open(str(BUNDLED / rel)) as w:
            seconds = w.getnframes() / w.getframerate()
        words = len(text[utt].split())
        clips.append((math.ceil(seconds * 100 / 8), 12 + 5 * words))  # MDD answer: JSON, words, ~4 phones a word
    picks = np.random.default_rng(seed).integers(len(clips), size=UTTERANCES)
    lengths, tasks = [], []
    for audio, mdd_answer in (clips[i] for i in picks):
        lengths += [MDD_TEXT + APA_EXTRA + APA_ANSWER + audio, MDD_TEXT + mdd_answer + audio]
        tasks += ["apa", "mdd"]
    return lengths, tasks


def single_task_steps(order, tasks) -> tuple[int, int]:
    """(optimizer steps that see one task only, all steps) of an epoch's row order."""
    steps = [order[s:s + BATCH * ACCUM] for s in range(0, len(order), BATCH * ACCUM)]
    return sum(len({tasks[i] for i in step}) == 1 for step in steps), len(steps)


def padding_waste(order, lengths) -> float:
    """Share of the padded micro-batches' tokens that are padding."""
    padded = real = 0
    for b in range(0, len(order), BATCH):
        batch = [lengths[i] for i in order[b:b + BATCH]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1 - real / padded


def test_optimizer_steps_mix_the_tasks_as_a_uniform_shuffle_does_at_length_grouping_padding():
    lengths, tasks = paper_lengths()
    epochs = 5
    ours, uniform, grouped = [], [], []
    for epoch in range(epochs):
        sampler = TaskLengthSampler(lengths, tasks, BATCH, seed=42)
        sampler.set_epoch(epoch)
        ours.append(list(sampler))
        uniform.append(torch.randperm(len(lengths), generator=torch.Generator().manual_seed(epoch)).tolist())
        # what train_sampling_strategy="group_by_length" built (the batch it groups by: batch x accum)
        grouped.append(list(LengthGroupedSampler(BATCH * ACCUM, lengths=lengths,
                                                 generator=torch.Generator().manual_seed(epoch))))

    def share(orders):
        single, steps = map(sum, zip(*(single_task_steps(o, tasks) for o in orders)))
        return single / steps, steps // epochs

    (ours_single, steps), (uniform_single, _), (grouped_single, _) = share(ours), share(uniform), share(grouped)
    assert steps == 79
    assert grouped_single > 0.85  # the problem: ~74 of 79 steps single-task
    assert ours_single <= uniform_single + 0.03  # a uniform shuffle of rows: ~0
    # and the micro-batches stay single-task (one may mix, from the tasks' leftover rows)
    for order in ours:
        mixed = sum(len({tasks[i] for i in order[b:b + BATCH]}) > 1 for b in range(0, len(order), BATCH))
        assert mixed <= 1

    waste = {name: np.mean([padding_waste(o, lengths) for o in orders])
             for name, orders in (("ours", ours), ("uniform", uniform), ("grouped", grouped))}
    assert waste["ours"] <= waste["grouped"] + 0.02, waste
    assert waste["uniform"] > 3 * waste["ours"], waste  # the reason to group at all
    print(f"single-task steps: ours {ours_single:.3f}, uniform {uniform_single:.3f}, group_by_length "
          f"{grouped_single:.3f} of {steps}/epoch; padding: " + ", ".join(f"{k} {v:.3f}" for k, v in waste.items()))


def test_every_row_once_in_full_micro_batches_but_the_last():
    lengths = [int(x) for x in torch.randint(10, 500, (103,), generator=torch.Generator().manual_seed(0))]
    tasks = ["apa" if i % 3 else "mdd" for i in range(103)]
    batches = micro_batches(lengths, tasks, 8, torch.Generator().manual_seed(1), pool_batches=2)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert [len(b) for b in batches[:-1]] == [8] * (len(batches) - 1) and len(batches[-1]) == 103 % 8
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest first: memory fails at once
    assert sum(len({tasks[i] for i in b}) > 1 for b in batches) <= 1


def test_the_order_depends_on_seed_and_epoch_only():
    lengths, tasks = paper_lengths()
    sampler = TaskLengthSampler(lengths, tasks, BATCH, seed=7)
    sampler.set_epoch(2)
    torch.manual_seed(123)  # the global RNG plays no part (a resumed run restores another state)
    first = list(sampler)
    resumed = TaskLengthSampler(lengths, tasks, BATCH, seed=7)  # a fresh process resuming at epoch 2
    torch.manual_seed(999)
    resumed.set_epoch(2)
    assert list(resumed) == first
    sampler.set_epoch(3)
    assert list(sampler) != first
    other_seed = TaskLengthSampler(lengths, tasks, BATCH, seed=8)
    assert list(other_seed) != list(TaskLengthSampler(lengths, tasks, BATCH, seed=7))


@pytest.mark.parametrize("processes", [2, 4, 8])
def test_n_processes_train_the_micro_batches_one_process_trains(processes):
    """Each process takes every N-th micro-batch (accelerate's BatchSamplerShard, as the trainer
    prepares it) and accumulates ACCUM / N: every optimizer step holds the same micro-batches."""
    lengths, tasks = paper_lengths()
    sampler = TaskLengthSampler(lengths, tasks, BATCH, seed=42)
    sampler.set_epoch(1)
    one = list(BatchSampler(sampler, BATCH, drop_last=False))
    shards = [list(BatchSamplerShard(BatchSampler(sampler, BATCH, drop_last=False), num_processes=processes,
                                     process_index=rank)) for rank in range(processes)]
    steps_one = [sorted(map(tuple, one[s:s + ACCUM])) for s in range(0, len(one) - len(one) % ACCUM, ACCUM)]
    per = ACCUM // processes
    steps_n = [sorted(tuple(b) for shard in shards for b in shard[s:s + per])
               for s in range(0, len(steps_one) * per, per)]
    assert steps_n == steps_one


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="3 lengths but 2 task labels"):
        TaskLengthSampler([1, 2, 3], ["apa", "mdd"], 8, seed=0)
