import dataclasses
import json

import pytest

from pronounce.task.parse import ARPABET, ParseResult, parse_output, summarise
from pronounce.task.prompts import apa_answer, mdd_answer

APA = {"accuracy": 8, "fluency": 7, "prosodic": 9, "total": 8}


# ---------------------------------------------------------------- formats


def test_strict_json_apa_and_mdd():
    r = parse_output("apa", apa_answer(APA))
    assert r == ParseResult(APA, "json", ())
    r = parse_output("mdd", mdd_answer("We call it bear", ["W", "IY", "K", "AO", "L"]))
    assert r.status == "json" and r.flags == ()
    assert r.fields == {"word_transcript": "We call it bear", "phoneme_transcript": ["W", "IY", "K", "AO", "L"]}


def test_python_dict_style_of_the_papers_prompt():
    r = parse_output("apa", "{'accuracy': 8, 'fluency': 7, 'prosodic': 9, 'total': 8}")
    assert (r.fields, r.status) == (APA, "python_dict")
    r = parse_output("mdd", """{'word_transcript': "That's it", 'phoneme_transcript': 'DH AE T S IH T'}""")
    assert r.status == "python_dict" and r.fields["word_transcript"] == "That's it"


def test_papers_own_mdd_example_is_not_python_but_is_extracted():
    # The prompt's example puts an apostrophe inside a single-quoted string: invalid Python.
    text = ("{'word_transcript': 'That's an interesting observation.', "
            "'phoneme_transcript': 'DH EH S AX N IH N T AX R EH S T IH NG'}")
    r = parse_output("mdd", text)
    assert r.status == "extracted"
    assert r.fields["word_transcript"] == "That's an interesting observation."
    assert r.fields["phoneme_transcript"][:3] == ["DH", "EH", "S"]
    assert "regex_fields" in r.flags and "unknown_phones:AX" in r.flags  # AX is not a CMU phone


def test_never_eval():
    r = parse_output("apa", "__import__('os').system('echo pwned')")
    assert r.status == "no_fields" and r.fields is None


def test_prose_around_json():
    r = parse_output("apa", f"Sure! Here are the scores:\n{json.dumps(APA)}\nLet me know if you need more.")
    assert (r.fields, r.status, r.flags) == (APA, "extracted", ("embedded_object",))


def test_code_fence_and_escaped_quotes():
    text = '```json\n{"word_transcript": "He said \\"hi\\"", "phoneme_transcript": "HH IY S EH D HH AY"}\n```'
    r = parse_output("mdd", text)
    assert r.status == "extracted" and r.fields["word_transcript"] == 'He said "hi"'


def test_special_tokens_around_answer():
    r = parse_output("apa", json.dumps(APA) + "<|end|><|endoftext|>")
    assert (r.fields, r.status, r.flags) == (APA, "json", ("special_tokens",))


def test_key_value_prose():
    r = parse_output("apa", "Accuracy: 8\nFluency: 7\nProsodic: 9\nTotal score: 8")
    assert (r.fields, r.status, r.flags) == (APA, "extracted", ("regex_fields",))
    r = parse_output("mdd", "Word transcript: We call it\nPhoneme transcript: W IY K AO L IH T")
    assert r.status == "extracted"
    assert r.fields == {"word_transcript": "We call it", "phoneme_transcript": "W IY K AO L IH T".split()}


# ---------------------------------------------------------------- truncation


def test_truncated_before_last_field_is_missing():
    r = parse_output("apa", '{"accuracy": 8, "fluency": 7, "prosodic": 9, "tot')
    assert r.fields is None and r.status == "missing_fields"
    assert "missing:total" in r.flags


def test_truncated_after_last_value_is_extracted_and_flagged():
    r = parse_output("apa", '{"accuracy": 8, "fluency": 7, "prosodic": 9, "total": 8')
    assert (r.fields, r.status) == (APA, "extracted")
    assert "unterminated:total" in r.flags  # "8" could have been the start of a longer number


def test_truncated_phoneme_string():
    r = parse_output("mdd", '{"word_transcript": "We call it bear", "phoneme_transcript": "W IY K AO L IH')
    assert r.status == "extracted"
    assert r.fields["phoneme_transcript"] == ["W", "IY", "K", "AO", "L", "IH"]
    assert "unterminated:phoneme_transcript" in r.flags


def test_truncated_inside_word_transcript_is_missing_phonemes():
    r = parse_output("mdd", '{"word_transcript": "We call it b')
    assert r.status == "missing_fields" and r.flags[-1] == "missing:phoneme_transcript"


# ---------------------------------------------------------------- values


def test_integer_like_scores_accepted():
    r = parse_output("apa", '{"accuracy": "8", "fluency": 7.0, "prosodic": " 9 ", "total": 8}')
    assert r.fields == APA and r.status == "json" and r.flags == ()


def test_out_of_range_scores_clipped_and_flagged():
    r = parse_output("apa", '{"accuracy": 12, "fluency": -1, "prosodic": 10, "total": 0}')
    assert r.status == "json"
    assert r.fields == {"accuracy": 10, "fluency": 0, "prosodic": 10, "total": 0}
    assert r.flags == ("clipped:accuracy", "clipped:fluency")


@pytest.mark.parametrize("bad", ["7.5", "true", "null", '"eight"', '"NaN"', "[8]"])
def test_bad_scores(bad):
    r = parse_output("apa", f'{{"accuracy": {bad}, "fluency": 7, "prosodic": 9, "total": 8}}')
    assert r.fields is None and r.status == "bad_value" and "bad_value:accuracy" in r.flags


def test_missing_and_extra_fields():
    r = parse_output("apa", '{"accuracy": 8, "fluency": 7}')
    assert r.status == "missing_fields" and r.fields is None
    assert r.flags == ("missing:prosodic", "missing:total")
    r = parse_output("apa", '{"accuracy": 8, "fluency": 7, "prosodic": 9, "total": 8, "completeness": 10}')
    assert (r.fields, r.status, r.flags) == (APA, "json", ("extra:completeness",))


def test_keys_match_case_insensitively():
    r = parse_output("apa", '{"Accuracy": 8, "FLUENCY": 7, "prosodic": 9, "total": 8}')
    assert r.fields == APA and r.status == "json"


def test_phoneme_normalisation_and_unknown_phones():
    r = parse_output("mdd", '{"word_transcript": "it", "phoneme_transcript": "ih1  t <UNK> ax q ah0"}')
    assert r.status == "json"
    assert r.fields["phoneme_transcript"] == ["IH", "T", "<unk>", "AX", "Q", "AH"]  # unknown kept
    assert r.flags == ("unknown_phones:AX,Q",)


def test_empty_mdd_strings_are_bad():
    r = parse_output("mdd", '{"word_transcript": "", "phoneme_transcript": "W IY"}')
    assert r.status == "bad_value" and r.flags == ("bad_value:word_transcript",)
    r = parse_output("mdd", '{"word_transcript": "we", "phoneme_transcript": 3}')
    assert r.status == "bad_value" and r.flags == ("bad_value:phoneme_transcript",)


def test_phoneme_list_is_accepted_and_flagged():
    r = parse_output("mdd", '{"word_transcript": "we", "phoneme_transcript": ["W", "IY1"]}')
    assert r.fields["phoneme_transcript"] == ["W", "IY"] and r.flags == ("list_value:phoneme_transcript",)


@pytest.mark.parametrize("text", ["", "   \n", None, "<|end|>"])
def test_empty(text):
    r = parse_output("apa", text)
    assert r.fields is None and r.status == "empty"


@pytest.mark.parametrize("text", ["lorem ipsum dolor", "[8, 7, 9, 8]", "{not a dict}", "8"])
def test_garbage(text):
    r = parse_output("apa", text)
    assert r.fields is None and r.status == "no_fields"


def test_unknown_task_is_a_programming_error():
    with pytest.raises(ValueError, match=r"unknown task 'gop'; expected one of \['apa', 'mdd'\]"):
        parse_output("gop", "{}")


def test_result_is_frozen():
    r = parse_output("apa", json.dumps(APA))
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'status'"):
        r.status = "x"


def test_inventory():
    assert len(ARPABET) == 40 and "<unk>" in ARPABET and "AX" not in ARPABET


def test_summarise():
    texts = [json.dumps(APA), "{'accuracy': 8, 'fluency': 7, 'prosodic': 9, 'total': 8}",
             f"ok: {json.dumps(APA)}", '{"accuracy": 8}', '{"accuracy": 11, "fluency": 7, "prosodic": 9, "total": 8}',
             '{"accuracy": "x", "fluency": 7, "prosodic": 9, "total": 8}', "", "garbage"]
    s = summarise(parse_output("apa", t) for t in texts)
    assert s["n"] == 8 and s["parsed"] == 4 and s["parse_rate"] == 0.5
    assert s["status"] == {"json": 2, "python_dict": 1, "extracted": 1, "missing_fields": 1,
                           "bad_value": 1, "empty": 1, "no_fields": 1}
    assert s["failure_reasons"] == {"missing:fluency": 1, "missing:prosodic": 1, "missing:total": 1,
                                    "bad_value:accuracy": 1}
    assert s["flags"]["clipped"] == 1 and s["flags"]["embedded_object"] == 1
    assert summarise([])["parse_rate"] is None
