"""The paper's chat layout, control tokens and task prompts.

The prompts are quoted from Ahn & Nam (2025), "English Pronunciation Evaluation
without Complex Joint Training: LoRA Fine-tuned Speech Multimodal LLM",
arXiv:2509.02915, appendix 7.1 (APA) and 7.2 (MDD). They are the paper's method,
shipped so the method can be reproduced; credit the paper when reusing them.
"""

import json

USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
APA_TOKEN = "<|APA|>"
MDD_TOKEN = "<|MDD|>"
CONTROL_TOKENS = {"apa": APA_TOKEN, "mdd": MDD_TOKEN}
TASKS = ("apa", "mdd")
# The answers' keys and order as the appendix prompts ask for them. Figure 3 of the paper prints
# {"accuracy", "prosodic", "fluency", "total"} and spaced keys ("word transcript", "phoneme
# transcript"); we follow the prompts, as section 4.2 says the answers do ("the identical JSON
# format prescribed in the prompts"): an answer in Figure 3's layout would contradict its prompt.
APA_FIELDS = ("accuracy", "fluency", "prosodic", "total")
MDD_FIELDS = ("word_transcript", "phoneme_transcript")
TASK_FIELDS = {"apa": APA_FIELDS, "mdd": MDD_FIELDS}

APA_PROMPT = """Rate the pronunciation of the audio.

**Accuracy**
Score range: 0 - 10
* 9-10: The overall pronunciation of the sentence is excellent, with accurate phonology and no obvious pronunciation mistakes
* 7-8: The overall pronunciation of the sentence is good, with a few pronunciation mistakes
* 5-6: The overall pronunciation of the sentence is understandable, with many pronunciation mistakes and accent, but it does not affect the understanding of basic meanings
* 3-4: Poor, clumsy and rigid pronunciation of the sentence as a whole, with serious pronunciation mistakes
* 0-2: Extremely poor pronunciation and only one or two words are recognizable

**Fluency**
Score range: 0 - 10
* 8-10: Fluent without noticeable pauses or stammering
* 6-7: Fluent in general, with a few pauses, repetition, and stammering
* 4-5: The speech is a little disfluent, with many pauses, repetition, and stammering
* 0-3: Intermittent, very disfluent speech, with lots of pauses, repetition, and stammering

**Prosodic**
Score range: 0 - 10
* 9-10: Correct intonation at a stable speaking speed, speak with cadence, and can speak like a native
* 7-8: Nearly correct intonation at a stable speaking speed, nearly smooth and coherent, but with little stammering and few pauses
* 5-6: Unstable speech speed, many stammering and pauses with a poor sense of rhythm
* 3-4: Unstable speech speed, speak too fast or too slow, without the sense of rhythm
* 0-2: Poor intonation and lots of stammering and pauses, unable to read a complete sentence

**Total**
Score range: 0 - 10
Provide an overall assessment of the pronunciation quality considering all aspects of the speech. This should reflect your holistic evaluation of the speaker's pronunciation abilities based on the entire audio sample.
* 9-10: Excellent overall pronunciation that sounds nearly native-like
* 7-8: Good pronunciation with minor issues that don't affect comprehension
* 5-6: Fair pronunciation with noticeable non-native features but generally understandable
* 3-4: Poor pronunciation that requires effort to understand
* 0-2: Very poor pronunciation that is largely incomprehensible

Provide the results in the following JSON format:
{'accuracy': ACCURACY_SCORE, 'fluency': FLUENCY_SCORE, 'prosodic': PROSODIC_SCORE, 'total': TOTAL_SCORE}"""

# Two blank lines, as appendix 7.2 prints them: after "...phoneme-level breakdown." and after
# "...mark it with '<unk>'." (tests/task/test_prompts.py pins both prompts' text).
MDD_PROMPT = """Transcribe the audio utterance, providing both a word-level transcript and phoneme-level breakdown.

For the phoneme breakdown, use the CMU Pronouncing Dictionary format (e.g., AA, IH).
If a word or phoneme is unclear, mark it with '<unk>'.

Provide the results in the following JSON format:
{'word_transcript': 'That's an interesting observation.', 'phoneme_transcript': 'DH EH S AX N IH N T AX R EH S T IH NG AA B Z AX R V EY IH SH AX N'}"""

TASK_PROMPTS = {"apa": APA_PROMPT, "mdd": MDD_PROMPT}


def user_turn(task: str, audio_token: str, control_token: bool = True) -> str:
    """The prompt the model sees: user tag, control token, audio placeholder, task prompt.
    Without the control token for the untrained base model: the paper's baseline is the model
    "for inference without control tokens or additional training" (section 3.1)."""
    control = CONTROL_TOKENS[task] if control_token else ""
    return f"{USER}{control}{audio_token}{TASK_PROMPTS[task]}{END}{ASSISTANT}"


def without_control_token(prompt: str, task: str) -> str:
    """A materialized user turn (user_turn with its control token) without the control token:
    the untrained base model's prompt. A prompt not in that layout is a ValueError (stale data)."""
    head = f"{USER}{CONTROL_TOKENS[task]}"
    if not prompt.startswith(head):
        raise ValueError(f"a {task} prompt does not start with {head!r}: the materialized data are not in the "
                         "layout of pronounce.task.prompts; rerun the materialize stage")
    return USER + prompt[len(head):]


def apa_answer(scores: dict) -> str:
    """Strict JSON (double quotes) with integer scores, in the paper's field order."""
    return json.dumps({k: int(round(scores[k])) for k in APA_FIELDS})


def mdd_answer(sentence: str, pronounced_phones: list[str]) -> str:
    return json.dumps({"word_transcript": sentence, "phoneme_transcript": " ".join(pronounced_phones)})


def answer_turn(answer: str) -> str:
    """What the loss falls on: the answer and its end tag."""
    return f"{answer}{END}"
