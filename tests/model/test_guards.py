"""pronounce.model.guards: the model and its processor must agree on the audio placeholder id."""

import copy

import pytest

from pronounce.core.errors import PipelineError
from pronounce.model import loader as M
from pronounce.model import processor as MP
from pronounce.model import tiny as T
from pronounce.model.guards import AudioTokenMismatch, check_audio_token


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return T.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def processor(tiny):
    return MP.load_processor(tiny)


@pytest.fixture(scope="module")
def config(tiny):
    from transformers import Phi4MultimodalConfig

    return Phi4MultimodalConfig.from_pretrained(tiny)


def test_matching_ids_pass_for_a_config_and_a_model(config, processor, tiny):
    assert check_audio_token(config, processor) == processor.audio_token_id
    model = M.load_base_model(tiny)
    assert check_audio_token(model, processor) == model.config.audio_config.audio_token_id


def test_mismatch_names_both_ids_and_the_fix(config, processor):
    other = copy.deepcopy(config)
    other.audio_config.audio_token_id = processor.audio_token_id + 1
    with pytest.raises(AudioTokenMismatch, match=(
        rf"processor.audio_token_id is {processor.audio_token_id} .* but model.config.audio_config.audio_token_id is "
        rf"{processor.audio_token_id + 1}: the model would ignore the audio; load the processor from the same")):
        check_audio_token(other, processor)
    assert issubclass(AudioTokenMismatch, PipelineError)  # stages print it as one line


def test_a_config_without_audio_is_refused(processor):
    from transformers import PretrainedConfig

    with pytest.raises(AudioTokenMismatch, match="has no audio_config: the base model is not Phi-4-multimodal"):
        check_audio_token(PretrainedConfig(), processor)
