"""Build the Hugging Face form of a release-layout corpus (as mispeech/speechocean762 has it)."""

import json
from pathlib import Path

import datasets


def release_to_hf(release: Path, out: Path) -> Path:
    scores = json.loads((release / "resource" / "scores.json").read_text())
    splits = {}
    for split in ("train", "test"):
        kaldi = {name: dict(line.split(maxsplit=1) for line in (release / split / name).read_text().splitlines())
                 for name in ("wav.scp", "utt2spk", "spk2age", "spk2gender")}
        rows = []
        for utt, wav in kaldi["wav.scp"].items():
            s, spk = scores[utt], kaldi["utt2spk"][utt]
            words = [{**{k: w[k] for k in ("accuracy", "phones-accuracy", "stress", "text", "total")},
                      "phones": w["phones"].split(), "mispronunciations": w.get("mispronunciations", [])}
                     for w in s["words"]]
            rows.append({**{k: s[k] for k in ("accuracy", "fluency", "prosodic", "text", "total")},
                         "completeness": float(s["completeness"]), "words": words, "speaker": spk,
                         "gender": kaldi["spk2gender"][spk], "age": int(kaldi["spk2age"][spk]),
                         "audio": {"bytes": (release / wav.strip()).read_bytes(), "path": f"{utt}.wav"}})
        ds = datasets.Dataset.from_list(rows[::-1])  # another order than the release's, on purpose
        splits[split] = ds.cast_column("audio", datasets.Audio(sampling_rate=16_000, decode=False))
    datasets.DatasetDict(splits).save_to_disk(str(out))
    return out
