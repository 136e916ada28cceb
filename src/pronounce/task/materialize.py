"""Stage `materialize`: decoded utterances -> the instruction dataset (APA + MDD per utterance).

Each row is one training instance: the user turn (control token, audio placeholder, the
paper's prompt), the strict-JSON answer, and a link (`audio_row`) to the clip in
data/decoded/<split>.arrow, so no clip is stored twice.

Why the dummy `input_ids` column: trl's SFTTrainer tokenises any dataset that lacks
`input_ids`, which would drop the audio and our label masking. A constant `[0]` makes it take
the dataset as already processed (with `dataset_kwargs={"skip_prepare_dataset": True}`), so
tokenisation, audio features and label masks are all left to our collator. It is never fed
to the model.
"""

import sys
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from ..core.artifacts import SPLITS, ArrowWriter, atomic_dir, iter_batches, write_json
from .prompts import TASKS, answer_turn, apa_answer, mdd_answer, user_turn

SCHEMA = pa.schema([
    ("utt_id", pa.string()), ("split", pa.string()), ("task", pa.string()),
    ("prompt", pa.string()), ("answer", pa.string()), ("text", pa.string()),
    ("audio_row", pa.int64()), ("duration", pa.float64()), ("input_ids", pa.list_(pa.int64())),
])
LABEL_COLUMNS = ["utt_id", "split", "text", "accuracy", "fluency", "prosodic", "total", "pronounced_phones", "duration"]


def instances(utt: dict, audio_row: int, audio_token: str):
    """The two instances (APA, MDD) of one decoded utterance."""
    answers = {"apa": apa_answer(utt), "mdd": mdd_answer(utt["text"], utt["pronounced_phones"])}
    for task in TASKS:
        prompt = user_turn(task, audio_token)
        yield {
            "utt_id": utt["utt_id"], "split": utt["split"], "task": task, "prompt": prompt,
            "answer": answers[task], "text": prompt + answer_turn(answers[task]),
            "audio_row": audio_row, "duration": utt["duration"], "input_ids": [0],
        }


def run_materialize(decoded_dir, out_dir, audio_token: str, progress=True) -> dict:
    decoded_dir = Path(decoded_dir)
    counts = {}
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            # Only the label columns, one batch resident at a time: the audio stays on disk,
            # referenced by row, and memory does not grow with the corpus.
            batches = iter_batches(decoded_dir / f"{split}.arrow", LABEL_COLUMNS)
            writer = ArrowWriter(tmp / f"{split}.arrow", SCHEMA, batch_rows=256)
            audio_row = 0  # the utterance's row in decoded/<split>.arrow
            for batch in tqdm(batches, desc=f"materialize {split}", disable=not progress, file=sys.stderr):
                for utt in batch.to_pylist():
                    for row in instances(utt, audio_row, audio_token):
                        writer.write(row)
                    audio_row += 1
            writer.close()
            counts[split] = {"utterances": audio_row, "instances": writer.count}
        write_json(tmp / "summary.json", {"audio_token": audio_token, "splits": counts})
    return counts


def load_instances(materialized_dir, split: str):
    """The split as a memory-mapped `datasets.Dataset` (what SFTTrainer takes)."""
    import datasets

    return datasets.Dataset.from_file(str(Path(materialized_dir) / f"{split}.arrow"), in_memory=False)
