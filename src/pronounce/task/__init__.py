"""The task as the paper poses it: prompts and answers, the instruction dataset, parsing answers.

- prompts      the chat layout, control tokens and the paper's two prompts
- materialize  stage `materialize`: decoded utterances -> APA and MDD instances
- parse        a generated answer -> task fields, or the reason it did not parse
- predictions  the predictions files the evaluate stage writes and later stages read
"""

from .._face import lazy

_FACE = {
    "prompts": ["TASKS", "user_turn", "answer_turn", "apa_answer", "mdd_answer"],
    "materialize": ["run_materialize", "load_instances"],
    "parse": ["ParseResult", "parse_output", "summarise"],
    "predictions": ["read_jsonl", "write_jsonl"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
