"""The paper's two prompts, letter for letter, and the prompts of the untrained base model.

The expected text is copied here from the paper (Ahn & Nam 2025, arXiv:2509.02915, appendix 7.1
and 7.2), not read from pronounce.task.prompts: a test that compared the module with itself could
not fail. The MDD prompt has two blank lines, after "...phoneme-level breakdown." and after
"...mark it with '<unk>'.", as the paper prints it.
"""

import pytest

from pronounce.task import prompts

PAPER_APA = (
    'Rate the pronunciation of the audio.\n'
    '\n'
    '**Accuracy**\n'
    'Score range: 0 - 10\n'
    '* 9-10: The overall pronunciation of the sentence is excellent, with accurate phonology and no obvious pronunciation mistakes\n'
    '* 7-8: The overall pronunciation of the sentence is good, with a few pronunciation mistakes\n'
    '* 5-6: The overall pronunciation of the sentence is understandable, with many pronunciation mistakes and accent, but it does not affect the understanding of basic meanings\n'
    '* 3-4: Poor, clumsy and rigid pronunciation of the sentence as a whole, with serious pronunciation mistakes\n'
    '* 0-2: Extremely poor pronunciation and only one or two words are recognizable\n'
    '\n'
    '**Fluency**\n'
    'Score range: 0 - 10\n'
    '* 8-10: Fluent without noticeable pauses or stammering\n'
    '* 6-7: Fluent in general, with a few pauses, repetition, and stammering\n'
    '* 4-5: The speech is a little disfluent, with many pauses, repetition, and stammering\n'
    '* 0-3: Intermittent, very disfluent speech, with lots of pauses, repetition, and stammering\n'
    '\n'
    '**Prosodic**\n'
    'Score range: 0 - 10\n'
    '* 9-10: Correct intonation at a stable speaking speed, speak with cadence, and can speak like a native\n'
    '* 7-8: Nearly correct intonation at a stable speaking speed, nearly smooth and coherent, but with little stammering and few pauses\n'
    '* 5-6: Unstable speech speed, many stammering and pauses with a poor sense of rhythm\n'
    '* 3-4: Unstable speech speed, speak too fast or too slow, without the sense of rhythm\n'
    '* 0-2: Poor intonation and lots of stammering and pauses, unable to read a complete sentence\n'
    '\n'
    '**Total**\n'
    'Score range: 0 - 10\n'
    "Provide an overall assessment of the pronunciation quality considering all aspects of the speech. This should reflect your holistic evaluation of the speaker's pronunciation abilities based on the entire audio sample.\n"
    '* 9-10: Excellent overall pronunciation that sounds nearly native-like\n'
    "* 7-8: Good pronunciation with minor issues that don't affect comprehension\n"
    '* 5-6: Fair pronunciation with noticeable non-native features but generally understandable\n'
    '* 3-4: Poor pronunciation that requires effort to understand\n'
    '* 0-2: Very poor pronunciation that is largely incomprehensible\n'
    '\n'
    'Provide the results in the following JSON format:\n'
    "{'accuracy': ACCURACY_SCORE, 'fluency': FLUENCY_SCORE, 'prosodic': PROSODIC_SCORE, 'total': TOTAL_SCORE}"
)

PAPER_MDD = (
    'Transcribe the audio utterance, providing both a word-level transcript and phoneme-level breakdown.\n'
    '\n'
    'For the phoneme breakdown, use the CMU Pronouncing Dictionary format (e.g., AA, IH).\n'
    "If a word or phoneme is unclear, mark it with '<unk>'.\n"
    '\n'
    'Provide the results in the following JSON format:\n'
    "{'word_transcript': 'That's an interesting observation.', 'phoneme_transcript': 'DH EH S AX N IH N T AX R EH S T IH NG AA B Z AX R V EY IH SH AX N'}"
)


def test_both_prompts_are_the_papers_text():
    assert prompts.APA_PROMPT == PAPER_APA
    assert prompts.MDD_PROMPT == PAPER_MDD
    assert prompts.TASK_PROMPTS == {"apa": PAPER_APA, "mdd": PAPER_MDD}


def test_the_mdd_prompt_has_the_papers_two_blank_lines():
    paragraphs = prompts.MDD_PROMPT.split("\n\n")
    assert len(paragraphs) == 3
    assert paragraphs[0].endswith("phoneme-level breakdown.")
    assert paragraphs[1].endswith("mark it with '<unk>'.")
    assert paragraphs[2].startswith("Provide the results in the following JSON format:")


def test_trained_turns_carry_the_control_token_and_the_base_models_do_not():
    for task, token in (("apa", "<|APA|>"), ("mdd", "<|MDD|>")):
        trained = prompts.user_turn(task, "<|audio|>")
        base = prompts.user_turn(task, "<|audio|>", control_token=False)
        assert trained == f"<|user|>{token}<|audio|>{prompts.TASK_PROMPTS[task]}<|end|><|assistant|>"
        assert base == f"<|user|><|audio|>{prompts.TASK_PROMPTS[task]}<|end|><|assistant|>"
        assert prompts.without_control_token(trained, task) == base
        assert not any(t in base for t in prompts.CONTROL_TOKENS.values())


def test_a_prompt_without_the_layout_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="rerun the materialize stage"):
        prompts.without_control_token("<|user|><|audio|>Rate", "apa")
    with pytest.raises(ValueError, match="rerun the materialize stage"):
        prompts.without_control_token(prompts.user_turn("mdd", "<|audio|>"), "apa")  # the other task's token
