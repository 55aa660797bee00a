"""Request parsing and validation: every bad input names its field and the allowed range."""
import numpy as np
import pytest

from musicgen import protocol
from musicgen.protocol import (
    AudioOptions, CancelledError, DeadlineExceededError, InvalidRequestError, StageError, StageUnavailableError, UnavailableError,
    parse_text_to_music, status_of,
)
from musicgen_client import interface as api


def req(**fields):
    inputs = {api.PROMPT: np.array([b"a calm piano melody"], dtype=object)}
    for name, value in fields.items():
        inputs[name] = value
    return inputs


def test_defaults_and_fresh_seed():
    parsed = parse_text_to_music(req())
    assert parsed.prompt == "a calm piano melody"
    defaults = AudioOptions()
    assert parsed.options.num_inference_steps == defaults.num_inference_steps == 20
    assert parsed.options.audio_length_in_s == defaults.audio_length_in_s == 5.0
    assert parsed.options.guidance_scale == 2.5
    assert parsed.options.negative_prompt is None
    assert parsed.options.num_waveforms_per_prompt is None and parsed.options.candidates == 1  # not asked: flat audio
    seeds = {parse_text_to_music(req()).options.seed for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s <= api.SEED_RANGE.maximum for s in seeds)


def test_explicit_values_pass_through():
    parsed = parse_text_to_music(req(
        negative_prompt=np.array(["low quality".encode()], dtype=object),
        num_inference_steps=np.array([7], dtype=np.int32),
        audio_length_in_s=np.array([2.5], dtype=np.float32),
        guidance_scale=np.array([1.0], dtype=np.float32),
        seed=np.array([2**63 - 1], dtype=np.int64),
        num_waveforms_per_prompt=np.array([8], dtype=np.int32),
    ))
    o = parsed.options
    assert (o.negative_prompt, o.num_inference_steps, o.audio_length_in_s, o.guidance_scale, o.seed,
            o.num_waveforms_per_prompt, o.candidates) == ("low quality", 7, 2.5, 1.0, 2**63 - 1, 8, 8)


@pytest.mark.parametrize("field,value,expected", [
    (api.NUM_INFERENCE_STEPS, np.array([0], dtype=np.int32), "num_inference_steps: 0 is out of range: allowed 1 to 500"),
    (api.NUM_INFERENCE_STEPS, np.array([501], dtype=np.int32), "allowed 1 to 500"),
    (api.AUDIO_LENGTH_IN_S, np.array([np.nan], dtype=np.float32), "audio_length_in_s: nan is out of range"),
    (api.AUDIO_LENGTH_IN_S, np.array([np.inf], dtype=np.float32), "out of range"),
    (api.AUDIO_LENGTH_IN_S, np.array([31.0], dtype=np.float32), "allowed 0.0 to 30.0"),
    (api.GUIDANCE_SCALE, np.array([-1.0], dtype=np.float32), "guidance_scale: -1.0 is out of range"),
    (api.SEED, np.array([-5], dtype=np.int64), "seed: -5 is out of range"),
    (api.NUM_WAVEFORMS_PER_PROMPT, np.array([0], dtype=np.int32), "num_waveforms_per_prompt: 0 is out of range: allowed 1 to 8"),
    (api.NUM_WAVEFORMS_PER_PROMPT, np.array([9], dtype=np.int32), "num_waveforms_per_prompt: 9 is out of range"),
    (api.NUM_WAVEFORMS_PER_PROMPT, np.array([2, 3], dtype=np.int32), "expected exactly one value"),
    (api.NUM_INFERENCE_STEPS, np.array([1, 2], dtype=np.int32), "expected exactly one value"),
    (api.NEGATIVE_PROMPT, np.array([b"\xff\xfe bad"], dtype=object), "is not valid UTF-8"),
    (api.NEGATIVE_PROMPT, np.array([b"x" * (api.MAX_PROMPT_BYTES + 1)], dtype=object), "allowed at most 4096"),
])
def test_bad_options_name_field_and_range(field, value, expected):
    with pytest.raises(InvalidRequestError) as err:
        parse_text_to_music(req(**{field: value}))
    assert err.value.field == field
    assert expected in str(err.value)
    assert status_of(err.value) == "invalid_argument"


@pytest.mark.parametrize("prompt,expected", [
    (None, "prompt: is required"),
    (b"", "prompt: must not be empty"),
    (b"   \n", "prompt: must not be empty"),
    (b"\xc3\x28", "prompt: is not valid UTF-8"),
    (b"nul\x00byte", "prompt: must not contain NUL"),
])
def test_bad_prompts(prompt, expected):
    inputs = req()
    inputs[api.PROMPT] = None if prompt is None else np.array([prompt], dtype=object)
    with pytest.raises(InvalidRequestError, match=expected):
        parse_text_to_music(inputs)


def test_model_minimum_length_is_enforced():
    with pytest.raises(InvalidRequestError, match="below this model's minimum 0.04"):
        parse_text_to_music(req(audio_length_in_s=np.array([0.01], dtype=np.float32)), min_audio_length_in_s=0.04)


def test_status_mapping():
    assert status_of(StageError("audioldm_unet", "boom")) == "internal"
    assert status_of(CancelledError("gone")) == "cancelled"
    assert status_of(DeadlineExceededError("the request's timeout of 2 s has passed")) == "deadline_exceeded"
    assert status_of(UnavailableError("busy")) == "unavailable"
    down = StageUnavailableError("caption", "Stub process 'caption_0_0' is not healthy.")
    assert status_of(down) == "unavailable" and str(down).startswith("stage caption failed: ")
    assert status_of(RuntimeError("bug")) == "internal"


def test_fp32_values_are_read_as_the_decimal_sent():
    parsed = parse_text_to_music(req(audio_length_in_s=np.array([1.03], dtype=np.float32),
                                     guidance_scale=np.array([3.1], dtype=np.float32)))
    assert parsed.options.audio_length_in_s == 1.03 and parsed.options.guidance_scale == 3.1


def test_cancellation_is_asked_at_most_every_interval_and_sticks(monkeypatch):
    clock, answers = [0.0], iter([False, True])
    monkeypatch.setattr(protocol.time, "monotonic", lambda: clock[0])
    asked = []
    cancelled = protocol.throttled(lambda: asked.append(clock[0]) or next(answers), every_s=0.02)
    assert not cancelled() and not cancelled()  # the second call, at the same time, does not ask again
    clock[0] = 0.01
    assert not cancelled()
    clock[0] = 0.03
    assert cancelled()
    clock[0] = 1.0
    assert cancelled()  # once cancelled, never asked again
    assert asked == [0.0, 0.03]
