"""`pronounce assess` on the tiny model trained for a few steps: reports for bundled clips, the
same answers as evaluation's generator, length-sorted batches, a golden per-word diff on fixed
answers, and every bad input as one line."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf
from conftest import BUNDLED, ROOT, SHORT_RECIPE, raw_params

from pronounce.__main__ import main as pronounce
from pronounce.assess.api import AssessError, Assessor, Recording, find_adapter, read_manifest
from pronounce.assess.report import render_html, render_table, result, to_jsonl
from pronounce.assess.words import expected_words, word_diff
from pronounce.core.artifacts import read_arrow
from pronounce.core.params import parse_params
from pronounce.data.audio import AudioStore
from pronounce.evaluation.generation import Generator


@pytest.fixture(scope="module")
def workspace(training_ws):
    """A decoded corpus, a training slice and the base model: the test run's, read only."""
    return training_ws


WAVE = BUNDLED / "WAVE" / "SPEAKER0003"
CLIPS = {u: (WAVE / f"{u}.WAV", text) for u, text in
         (line.split("\t") for line in (BUNDLED / "test" / "text").read_text().splitlines()[:3])}
APA_OK = '{"accuracy": 8, "fluency": 9, "prosodic": 7, "total": 8}'


@pytest.fixture(scope="module")
def params():
    """params.yaml's dict, its smoke recipe short and its answers short."""
    p = raw_params()
    p["train"]["recipes"]["smoke"].update(SHORT_RECIPE)  # what the test run's trained_r64 was trained with
    p["eval"].update(batch_size=2, max_new_tokens=40)  # short answers keep each generation to a second
    return p


@pytest.fixture(scope="module")
def model_dir(workspace, trained_r64, tmp_path_factory):  # noqa: F811
    """models/<config> layout: paper_r64 beside base (the base model with its base.json): the
    test run's trained adapter and base, linked (no test writes into either)."""
    models = tmp_path_factory.mktemp("models")
    (models / "base").symlink_to(workspace / "base")
    (models / "paper_r64").symlink_to(trained_r64 / "model")
    return models / "paper_r64"


@pytest.fixture(scope="module")
def assessor(model_dir, params):
    return Assessor(model_dir, params=parse_params(params))


@pytest.fixture(scope="module")
def results(assessor):
    return assessor.assess([Recording(str(path), text) for path, text in CLIPS.values()])


def write_params(tmp_path, params):
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return str(tmp_path / "params.yaml")


# --------------------------------------------------------------------------- reports on bundled clips


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_results_hold_answers_canonical_phones_and_durations(results):
    assert [r["path"] for r in results] == [str(path) for path, _ in CLIPS.values()]
    for r, (path, text) in zip(results, CLIPS.values()):
        assert r["error"] is None
        assert r["duration_s"] == round(sf.info(str(path)).frames / 16000, 2)
        for task in ("apa", "mdd"):
            assert isinstance(r[task]["raw"], str) and r[task]["stopped"] in ("eos", "max_new_tokens")
        if r["apa"]["scores"] is not None:
            assert set(r["apa"]["scores"]) == {"accuracy", "fluency", "prosodic", "total"}
            assert all(0 <= v <= 10 for v in r["apa"]["scores"].values())
        assert [c["word"] for c in r["canonical"]] == text.split()
        assert r["missing_words"] == []
        assert (r["words"] is None) == (r["mdd"]["phones"] is None)


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_table_json_and_html_render_every_result(results):
    table = render_table(results)
    for r in results:
        assert f"{r['path']}  ({r['duration_s']:.2f} s)  expected: {r['text']!r}" in table
    assert table.endswith("3 recording(s): 3 assessed, 0 failed\n")
    assert [json.loads(line) for line in to_jsonl(results).splitlines()] == results

    page = render_html(results)
    tags = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    Collect().feed(page)
    assert not [t for t, a in tags if t in ("script", "link", "img", "iframe") or "src" in a or "href" in a]
    assert "http" not in page  # self-contained: nothing to fetch
    assert page.count("<section>") == 3 and all(str(p) in page for p, _ in CLIPS.values())


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_answers_equal_evaluations_generator_on_the_decoded_clip(assessor, workspace):  # noqa: F811
    """The file read by assess and the clip the decode stage stored give the model the same input."""
    utt, (path, text) = next(iter(CLIPS.items()))
    row = read_arrow(workspace / "decoded" / "test.arrow").column("utt_id").to_pylist().index(utt)
    store = AudioStore(workspace / "decoded" / "test.arrow")
    gen = Generator(assessor.model, assessor.generate.collator.processor, lambda r: store[row], 40)
    got = assessor.assess([Recording(str(path), text)])[0]
    for task in ("apa", "mdd"):
        expected = gen([{"utt_id": utt, "task": task, "prompt": assessor.prompts[task]}])[0]
        assert got[task]["raw"] == expected["raw"]


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_stereo_and_other_rates_are_converted_as_decode_does(assessor, tmp_path):
    path, text = next(iter(CLIPS.values()))
    mono, rate = sf.read(str(path), dtype="int16")
    sf.write(tmp_path / "stereo.wav", np.stack([mono, mono], axis=1), rate, subtype="PCM_16")
    sf.write(tmp_path / "44k.flac", np.repeat(mono, 2)[: len(mono) * 44100 // 16000], 44100)
    mono_r, stereo_r, other = assessor.assess([Recording(str(p), text) for p in
                                               (path, tmp_path / "stereo.wav", tmp_path / "44k.flac")])
    # Two identical channels average to the mono samples exactly: the same answers.
    assert (stereo_r["apa"]["raw"], stereo_r["mdd"]["raw"]) == (mono_r["apa"]["raw"], mono_r["mdd"]["raw"])
    assert other["error"] is None and other["duration_s"] > 0


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_batches_are_one_task_each_sorted_by_length(assessor, monkeypatch):
    seen = []
    real = assessor.generate

    def recording(rows):
        seen.append([(r["task"], r["utt_id"]) for r in rows])
        return real(rows)

    monkeypatch.setattr(assessor, "generate", recording)
    recs = [Recording(str(p), t) for p, t in CLIPS.values()]
    order = sorted(range(3), key=lambda k: sf.info(recs[k].path).frames)  # shortest first
    got = assessor.assess(recs)
    assert seen == [[("apa", order[0]), ("apa", order[1])], [("apa", order[2])],
                    [("mdd", order[0]), ("mdd", order[1])], [("mdd", order[2])]]
    assert [r["path"] for r in got] == [r.path for r in recs]  # results in input order


# --------------------------------------------------------------------------- the command


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_command_prints_a_table_and_writes_html_and_jsonl(model_dir, params, tmp_path, capsys):
    p = write_params(tmp_path, params)
    (path, text), (path2, text2) = list(CLIPS.values())[:2]
    assert pronounce(["assess", "--model", str(model_dir), "--params", p, "--text", text, str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TINY SMOKE MODEL, NOT A REAL ASSESSMENT: paper_r64, final adapter (epoch 2 of 2), "
                          "recipe smoke, was trained on builtin:tiny")
    assert out.splitlines()[2].startswith(f"{path}  (") and "1 recording(s): 1 assessed, 0 failed" in out

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "empty.wav").write_bytes(b"")
    manifest = tmp_path / "clips" / "recordings.csv"
    manifest.write_text(f'path,text\n{path},"{text}"\nempty.wav,{text2}\n{path2},{text2}\n')
    assert pronounce(["assess", "--model", str(model_dir), "--params", p, "--manifest", str(manifest),
                     "--out", str(tmp_path / "r.html"), "--no-progress"]) == 1  # one recording failed
    err = capsys.readouterr().err
    assert f"{tmp_path / 'clips' / 'empty.wav'}: empty_audio: zero-byte file" in err.splitlines()
    page = (tmp_path / "r.html").read_text()
    assert page.count("<section>") == 3 and "error: empty_audio: zero-byte file" in page

    assert pronounce(["assess", "--model", str(model_dir), "--params", p, "--manifest", str(manifest),
                      "--json", "--out", str(tmp_path / "r.txt")]) == 1  # the flag wins over the suffix
    rows = [json.loads(line) for line in (tmp_path / "r.txt").read_text().splitlines()]
    assert [r["error"] is None for r in rows] == [True, False, True]
    # the answer record (an undertrained model may answer with <|end|> at once: raw "")
    assert isinstance(rows[0]["apa"]["raw"], str) and rows[0]["apa"]["stopped"] in ("eos", "max_new_tokens")
    assert rows[2]["text"] == text2


# --------------------------------------------------------------------------- golden per-word diff


GOLDEN_TABLE = """\
my.wav  (2.00 s)  expected: 'We call it the bear.'
  scores  (0-10; each with the paper's rubric line for its band)   [json]
    accuracy  8/10, band 7-8: The overall pronunciation of the sentence is good, with a few pronunciation mistakes
    fluency   9/10, band 8-10: Fluent without noticeable pauses or stammering
    prosodic  7/10, band 7-8: Nearly correct intonation at a stable speaking speed, nearly smooth and coherent, but with little stammering and few pauses
    total     8/10, band 7-8: Good pronunciation with minor issues that don't affect comprehension
  heard   'we call it the bear'   [json]: the model heard the expected sentence (5 of 5 words)
  said    AH W IY K AA L IH T DH IY B EH
  mispronounced (3 of 5 words):
    WE           added AH (as in cup)
    CALL         said AA (as in hot) for AO (as in law)
    BEAR         left out R (as in red)
     word  heard  expected  said     errors
  *  WE    WE     W IY      AH W IY  +AH
  *  CALL  CALL   K AO L    K AA L   AO->AA
     IT    IT     IH T      IH T
     THE   THE    DH IY     DH IY
  *  BEAR  BEAR   B EH R    B EH     -R
  phones: AA as in hot, AH as in cup, AO as in law, B as in boy, DH as in this, EH as in bed, IH as in sit, IY as in see, K as in key, L as in leg, R as in red, T as in top, W as in we

1 recording(s): 1 assessed, 0 failed
"""
CARD = {"banner": "TINY SMOKE MODEL, NOT A REAL ASSESSMENT: ...", "tiny": True, "smoke": True}


def test_golden_word_diff_and_table_on_a_fixed_answer():
    mdd = '{"word_transcript": "we call it the bear", "phoneme_transcript": "AH W IY K AA L IH T DH IY B EH"}'
    r = result("my.wav", "We call it the bear.", 2.0, {"raw": APA_OK, "stopped": "eos"}, mdd)
    assert r["apa"]["scores"] == {"accuracy": 8, "fluency": 9, "prosodic": 7, "total": 8}
    assert [(w["word"], w["expected"], w["said"], w["substituted"], w["deleted"], w["inserted"], w["ok"])
            for w in r["words"]] == [
        ("WE", ["W", "IY"], ["AH", "W", "IY"], [], [], ["AH"], False),  # an insertion before all goes to the first word
        ("CALL", ["K", "AO", "L"], ["K", "AA", "L"], [["AO", "AA"]], [], [], False),
        ("IT", ["IH", "T"], ["IH", "T"], [], [], [], True),
        ("THE", ["DH", "IY"], ["DH", "IY"], [], [], [], True),  # CMUdict's second variant: not an error
        ("BEAR", ["B", "EH", "R"], ["B", "EH"], [], ["R"], [], False),
    ]
    assert r["mispronounced"] == [{"word": "WE", "errors": "added AH (as in cup)"},
                                  {"word": "CALL", "errors": "said AA (as in hot) for AO (as in law)"},
                                  {"word": "BEAR", "errors": "left out R (as in red)"}]
    assert r["heard"]["matched"] == 5 and r["phones"]["DH"] == "this"
    assert render_table([r]) == GOLDEN_TABLE
    page = render_html([r])
    assert '<tr class=bad><td>CALL</td>' in page and '<abbr title="DH as in this">DH</abbr>' in page
    assert page.index("Mispronounced: 3 of 5 words") < page.index("<table class=words>")  # what to work on first


def test_the_banner_heads_every_output_format():
    r = result("my.wav", "We call it bear", 2.0, APA_OK, '{"word_transcript": "bye", "phoneme_transcript": "B AY"}',
               model=CARD)
    failed = result("x.wav", "We call it bear", error="empty_audio: zero-byte file", model=CARD)
    assert render_table([r, failed]).splitlines()[0] == CARD["banner"]
    assert to_jsonl([r, failed]).startswith('{"banner": "TINY SMOKE MODEL')
    assert all(json.loads(line)["banner"] == CARD["banner"] for line in to_jsonl([r, failed]).splitlines())
    body = render_html([r, failed]).split("<body>", 1)[1]
    assert body.startswith('<p class="banner" id=banner>TINY SMOKE MODEL')
    # the case: 9/10 beside every word marked, explained by what the model heard
    assert "the model heard other words (0 of 4 expected words): it did not recognise the sentence" in render_table([r])


def test_insertions_between_words_belong_to_the_word_before():
    words = word_diff(expected_words("it bear"), "IH T AH B EH R".split())
    assert [(w["word"], w["inserted"]) for w in words] == [("IT", ["AH"]), ("BEAR", [])]


def test_unparsed_answers_and_unknown_words_invent_nothing():
    r = result("a.wav", "We call it bear", 1.0, "I think it was good", '{"word_transcript": "we call"')
    assert r["apa"]["scores"] is None and r["apa"]["status"] == "no_fields"
    assert r["mdd"]["phones"] is None and r["mdd"]["status"] == "missing_fields"
    assert r["words"] is None and r["words_reason"] == "the MDD answer did not parse (missing_fields)"
    assert "scores  not parsed (no_fields): 'I think it was good'" in render_table([r])

    r = result("b.wav", "We call it Zorblax", 1.0, APA_OK, '{"word_transcript": "x", "phoneme_transcript": "W IY"}')
    assert r["missing_words"] == [] and r["predicted_words"] == ["ZORBLAX"]  # g2p-en's prediction, marked
    assert r["canonical"][-1] == {"word": "ZORBLAX", "phones": "Z AO R B AH L K S".split(), "predicted": True}
    assert [w["predicted"] for w in r["words"]] == [False, False, False, True]
    table = render_table([r])
    assert "  *  ZORBLAX^  X      Z AO R B AH L K S" in table
    assert "  ^ not in CMUdict: its expected phones are g2p-en's prediction" in table

    r = result("c.wav", "We call it 42", 1.0, APA_OK, '{"word_transcript": "x", "phoneme_transcript": "W IY"}')
    assert r["missing_words"] == ["42"] and r["words"] is None
    assert r["words_reason"] == ("no pronunciation for 42 (not in CMUdict, and g2p-en spells only letters: "
                                 "write numbers as words)")
    assert "  expected phones  W IY K AO L IH T <42?>" in render_table([r])
    with pytest.raises(ValueError, match="no pronunciation: 42"):
        word_diff(expected_words("We call it 42"), ["W"])


# --------------------------------------------------------------------------- bad input


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_bad_recordings_each_get_one_line_and_the_others_run(assessor, tmp_path):
    good, text = next(iter(CLIPS.values()))
    (tmp_path / "text.wav").write_text("not audio at all")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.int16), 16000, subtype="PCM_16")
    sf.write(tmp_path / "long.wav", (0.1 * np.random.default_rng(0).standard_normal(16000 * 31)), 16000)
    sf.write(tmp_path / "short.wav", np.full(100, 3000, np.int16), 16000, subtype="PCM_16")
    names = ["text.wav", "empty.wav", "silent.wav", "long.wav", "short.wav", "missing.wav"]
    got = assessor.assess([Recording(str(tmp_path / n), text) for n in names] + [Recording(str(good), text)])
    patterns = [r"^unreadable_audio: ", r"^empty_audio: zero-byte file$", r"^silent_audio: peak 0/32768",
                r"^too_long: 31\.00 s > data\.max_seconds=30\.0$", r"^too_short: 100 samples",
                r"^unreadable_audio: .*No such file"]
    for r, pattern in zip(got, patterns):
        assert re.search(pattern, r["error"]) and "\n" not in r["error"], (r["path"], r["error"])
        assert r["apa"] is None and r["words"] is None
    assert got[-1]["error"] is None and isinstance(got[-1]["apa"]["raw"], str)  # assessed (its answer may be "")
    table = render_table(got)
    assert f"{tmp_path / 'empty.wav'}  error: empty_audio: zero-byte file\n" in table
    assert table.endswith("7 recording(s): 1 assessed, 6 failed\n")
    # a manifest's missing file: its error states where relative paths are taken from
    (missing,) = assessor.assess([Recording(str(tmp_path / "sub" / "x.wav"), text, str(tmp_path / "list.csv"))])
    assert missing["error"].endswith("(relative audio paths are taken from the manifest's own folder, not the "
                                     f"current directory: {tmp_path / 'list.csv'})")


def one_line_error(capsys, argv, pattern):
    assert pronounce(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.match(r"error: " + pattern, err), err


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_inputs_the_command_cannot_start_from_are_one_line(assessor, model_dir, workspace,  # noqa: F811
                                                           tmp_path, capsys):
    m = ["assess", "--model", str(model_dir)]
    clip = str(next(iter(CLIPS.values()))[0])
    one_line_error(capsys, m + [clip], r"--text: no expected text")
    one_line_error(capsys, m + ["--text", "?!", clip], r"--text: no expected text")
    one_line_error(capsys, m + ["--text", "hi"], r"no recordings: give audio files")
    one_line_error(capsys, m + ["--manifest", "x.csv", clip], r"give either --manifest or audio files")
    one_line_error(capsys, m + ["--manifest", str(tmp_path / "none.csv")], r"manifest .*none\.csv: cannot read it")
    (tmp_path / "empty.csv").write_text("path,text\n\n")
    one_line_error(capsys, m + ["--manifest", str(tmp_path / "empty.csv")], r"manifest .*empty\.csv has no recordings")
    (tmp_path / "notext.csv").write_text(f"{clip},We call it bear\n{clip},\n")
    one_line_error(capsys, m + ["--manifest", str(tmp_path / "notext.csv")],
                   r"manifest .*notext\.csv line 2: no expected text")
    (tmp_path / "cols.csv").write_text(f"{clip},We call it, bear\n")
    one_line_error(capsys, m + ["--manifest", str(tmp_path / "cols.csv")], r"manifest .* line 1: expected 2 columns")
    t = ["--text", "hi", clip]
    one_line_error(capsys, ["assess", "--model", str(tmp_path / "nope")] + t, r"--model .*nope: no such folder")
    one_line_error(capsys, ["assess", "--model", str(workspace / "base")] + t,
                   r"--model .*base is not an adapter trained by this pipeline: no .*base/adapter/adapter_config\.json")
    (tmp_path / "cfg" / "adapter").mkdir(parents=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / "cfg" / "adapter" / f).write_bytes((model_dir / "adapter" / f).read_bytes())
    one_line_error(capsys, ["assess", "--model", str(tmp_path / "cfg")] + t,
                   r"no base model for .*base\.json not found")
    one_line_error(capsys, ["assess", "--model", str(model_dir), "--base", str(tmp_path / "nowhere")] + t,
                   r"cannot load .*adapter on the base model .*nowhere: base model folder .* does not exist")
    assert find_adapter(model_dir / "epoch-2") == (model_dir / "epoch-2", model_dir)  # an epoch's adapter
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(AssessError, match=r"no .*lonely/adapter_model\.safetensors"):
        find_adapter(tmp_path / "lonely")
    (tmp_path / "cfg" / "adapter" / "adapter_config.json").write_text('{"peft_type": "PREFIX_TUNING"}')
    with pytest.raises(AssessError, match=r"recording b\.wav: no expected text"):
        assessor.assess([Recording("a.wav", "hi"), Recording("b.wav", " ")])
    with pytest.raises(AssessError, match=r"adapter_config\.json is not a LoRA adapter config"):
        find_adapter(tmp_path / "cfg")


@pytest.mark.slow  # a model trained by the model_dir fixture
def test_the_command_prints_no_library_noise(model_dir, params, tmp_path):
    """transformers' RoPE advice, PEFT's deprecated-property warning and the weight-loading bar are
    filtered where they are emitted: standard error holds only the command's own lines."""
    path, text = next(iter(CLIPS.values()))
    proc = subprocess.run([sys.executable, "-m", "pronounce", "assess", "--model", str(model_dir), "--params",
                           write_params(tmp_path, params), "--text", text, str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("TINY SMOKE MODEL, NOT A REAL ASSESSMENT")


def test_python_m_pronounce_reports_a_bad_model_folder_in_one_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "pronounce", "assess", "--model", str(tmp_path), "--text", "hi",
                           str(tmp_path / "a.wav")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: --model {tmp_path} is not an adapter trained by this pipeline: "
        f"no {tmp_path}/adapter/adapter_config.json (expected models/<config> after `dvc repro`)"]


def test_manifest_paths_are_relative_to_its_folder(tmp_path):
    (tmp_path / "m.csv").write_text('a.wav,"Hello, world"\n/abs/b.flac,bear\n')
    assert read_manifest(tmp_path / "m.csv") == [Recording(str(tmp_path / "a.wav"), "Hello, world", str(tmp_path / "m.csv")),
                                                  Recording("/abs/b.flac", "bear")]
    help_text = subprocess.run([sys.executable, "-m", "pronounce", "assess", "--help"], capture_output=True,
                               text=True, cwd=ROOT, timeout=120).stdout
    assert "relative audio paths are taken from the manifest's own folder, not the current directory" in " ".join(
        help_text.split())
    with pytest.raises(AssessError, match=r"line 1: no audio path"):
        (tmp_path / "n.csv").write_text(",bear\n")
        read_manifest(tmp_path / "n.csv")

