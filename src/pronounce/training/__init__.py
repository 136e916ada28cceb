"""Supervised fine-tuning of one config: its adapter, batches, order, launch and checkpoints.

- train        stage `train`: SFT of one config with trl's SFTTrainer
- adapters     the model a config trains (fresh LoRA, the speech LoRA, the unfrozen audio path)
- collator     batches for SFT and for generation
- sampler      micro-batches of one task and like lengths, shuffled
- launch       rerunning the stage as several DDP processes
- checkpoints  the adapters a config left behind, and which to evaluate
"""

from .._face import lazy

_FACE = {
    "train": ["run_train"],
    "adapters": ["training_model", "build_peft_model"],
    "collator": ["PronunciationCollator"],
    "sampler": ["TaskLengthSampler"],
    "checkpoints": ["Checkpoint", "find_checkpoints", "select_epochs"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
