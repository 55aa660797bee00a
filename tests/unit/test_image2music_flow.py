"""The image → music recipe over a stand-in `call_model` (plain functions, no server): what each stage is
asked, in which order, and how the texts between stages are made safe for the next one."""
import numpy as np
import pytest

from musicgen.image2music import ImageToMusic
from musicgen.protocol import AudioOptions, CancelledError, ImageToMusicRequest, StageError
from musicgen_client import flow
from musicgen_client import interface as api


def recorder(caption: str, answer: str):
    calls = []

    def call_model(name, inputs, outputs):
        calls.append((name, inputs, list(outputs)))
        if name == api.CAPTION:
            return {api.CAPTION: np.array([caption.encode()], dtype=object)}
        if name == api.CHATGLM:
            return {api.TEXT: np.array([answer.encode()], dtype=object)}
        return {api.AUDIO: np.zeros(4, np.float32), api.SEED: inputs[api.SEED], api.SAMPLING_RATE: np.array([16000])}

    return call_model, calls


REQUEST = ImageToMusicRequest(b"png bytes", AudioOptions(negative_prompt="noise", num_inference_steps=7,
                                                         audio_length_in_s=2.5, guidance_scale=3.0, seed=99))


def test_stages_in_order_with_the_original_glue():
    call_model, calls = recorder("a cat on a table", "Style: soft jazz piano\nmore")
    result = ImageToMusic(call_model)(REQUEST)
    assert [c[0] for c in calls] == [api.CAPTION, api.CHATGLM, api.TEXT2MUSIC]
    assert calls[0][1][api.IMAGE][0] == b"png bytes"
    assert calls[1][1][api.PROMPT][0].decode() == flow.music_prompt_request("a cat on a table")
    audio_inputs = calls[2][1]
    assert audio_inputs[api.PROMPT][0] == b"soft jazz piano"
    assert (audio_inputs[api.SEED][0], audio_inputs[api.NUM_INFERENCE_STEPS][0]) == (99, 7)
    assert (audio_inputs[api.AUDIO_LENGTH_IN_S][0], audio_inputs[api.GUIDANCE_SCALE][0]) == (2.5, 3.0)
    assert audio_inputs[api.NEGATIVE_PROMPT][0] == b"noise"
    assert (result.caption, result.music_prompt) == ("a cat on a table", "soft jazz piano")
    assert int(result.outputs[api.SEED][0]) == 99


def test_blank_music_prompt_falls_back_to_the_caption():
    call_model, calls = recorder("a quiet harbour", "Music:\n")
    assert ImageToMusic(call_model)(REQUEST).music_prompt == "a quiet harbour"


def test_nothing_to_render_is_a_stage_error():
    call_model, _ = recorder("   ", "")
    with pytest.raises(StageError, match="chatglm"):
        ImageToMusic(call_model)(REQUEST)


def test_cancellation_between_stages():
    call_model, calls = recorder("a cat", "jazz")
    with pytest.raises(CancelledError):
        ImageToMusic(call_model)(REQUEST, keep_going=lambda: False)
    assert [c[0] for c in calls] == [api.CAPTION]


def test_audio_prompt_is_made_acceptable():
    assert flow.audio_prompt("nul\x00here", "cap", 100) == "nulhere"
    assert flow.audio_prompt("é" * 10, "cap", 5) == "éé"  # cut on a character boundary
    assert flow.music_prompt_from_answer("Sure: a calm lake melody\nsecond") == "a calm lake melody"
    assert "scene.  Description:x." in flow.music_prompt_request("x", 4096)


def test_a_caption_with_a_nul_still_makes_a_valid_chatglm_prompt():
    """Seen in a soak: a tiny random MiniGPT4 decoded a NUL into its caption; ChatGLM's input refuses NULs."""
    from musicgen.protocol import parse_text

    question = flow.music_prompt_request("a cat\x00 on a table" + "é" * 3000)
    assert "\x00" not in question and len(question.encode()) <= api.MAX_PROMPT_BYTES
    assert parse_text({api.PROMPT: np.array([question.encode()], dtype=object)}).prompt == question


def test_progress_of_every_stage_in_order_with_the_denoising_steps_relayed():
    call_model, calls = recorder("a cat", "jazz")
    heard = []

    def call_audio(inputs, names, progress):
        steps = int(inputs[api.NUM_INFERENCE_STEPS][0])
        for step in range(1, steps + 1):
            progress(api.DENOISE, step, steps)
        return call_model(api.TEXT2MUSIC, inputs, names)

    result = ImageToMusic(call_model, call_audio)(REQUEST, progress=lambda *p: heard.append(p))
    assert [c[0] for c in calls] == [api.CAPTION, api.CHATGLM, api.TEXT2MUSIC]
    assert heard == [(api.CAPTION, 0, 1), (api.CAPTION, 1, 1), (api.CHATGLM, 0, 1), (api.CHATGLM, 1, 1)] + \
        [(api.DENOISE, step, 7) for step in range(8)]
    assert int(result.outputs[api.SEED][0]) == 99
