"""image → music as a recipe over three served models: caption (MiniGPT4), chatglm (ChatGLM), text2music.

It calls the stages' served models, not copies of their code, through one callable
`call_model(name, inputs, output_names) -> outputs` (BLS inside Triton). The glue between stages is
musicgen_client.flow's, the same the client's stage-by-stage mode uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from musicgen_client import flow
from musicgen_client import interface as api

from .protocol import AudioOptions, CancelledError, ImageToMusicRequest, StageError

CallModel = Callable[[str, Dict[str, np.ndarray], Sequence[str]], Dict[str, np.ndarray]]
Progress = Callable[[str, int, int], None]  # (stage, step, total)
# text2music's call as the flow makes it: (inputs, output names, progress of its denoising steps) -> outputs.
CallAudio = Callable[[Dict[str, np.ndarray], Sequence[str], Progress], Dict[str, np.ndarray]]


def _no_progress(stage: str, step: int, total: int) -> None:
    """Progress nobody listens to."""


def _bytes(text: str) -> np.ndarray:
    return np.array([text.encode("utf-8")], dtype=object)


def _text(array: np.ndarray) -> str:
    return array.reshape(-1)[0].decode("utf-8", errors="replace")


def audio_option_tensors(options: AudioOptions) -> Dict[str, np.ndarray]:
    """text2music's optional inputs, every one explicit (the seed above all: it was drawn upstream)."""
    tensors = {
        api.NUM_INFERENCE_STEPS: np.array([options.num_inference_steps], dtype=np.int32),
        api.AUDIO_LENGTH_IN_S: np.array([options.audio_length_in_s], dtype=np.float32),
        api.GUIDANCE_SCALE: np.array([options.guidance_scale], dtype=np.float32),
        api.SEED: np.array([options.seed], dtype=np.int64),
    }
    if options.negative_prompt:
        tensors[api.NEGATIVE_PROMPT] = _bytes(options.negative_prompt)
    if options.num_waveforms_per_prompt is not None:  # absent stays absent: the flat [samples] audio
        tensors[api.NUM_WAVEFORMS_PER_PROMPT] = np.array([options.num_waveforms_per_prompt], dtype=np.int32)
    return tensors


@dataclass
class ImageMusic:
    caption: str
    music_prompt: str  # what AudioLDM rendered
    outputs: Dict[str, np.ndarray]  # text2music's: audio, seed, sampling_rate


class ImageToMusic:
    """`call_audio`, when given, makes the text2music call instead of `call_model` (streaming its denoising
    progress); by default text2music is called like the other stages, and its progress is not seen."""

    def __init__(self, call_model: CallModel, call_audio: Optional[CallAudio] = None):
        self.call_model = call_model
        self.call_audio = call_audio or (lambda inputs, names, progress: call_model(api.TEXT2MUSIC, inputs, names))

    def __call__(self, request: ImageToMusicRequest, keep_going: Optional[Callable[[], bool]] = None,
                 progress: Progress = _no_progress) -> ImageMusic:
        """`progress(stage, step, total)` hears each stage start (step 0) and end: the LLM stages as one step
        each (they are unary models), text2music by denoising step (api.DENOISE)."""
        def check(stage: str) -> None:
            if keep_going is not None and not keep_going():
                raise CancelledError(f"cancelled before {stage}")

        progress(api.CAPTION, 0, 1)
        caption = _text(self.call_model(api.CAPTION, {api.IMAGE: np.array([request.image], dtype=object)},
                                        [api.CAPTION])[api.CAPTION])
        progress(api.CAPTION, 1, 1)
        check(api.CHATGLM)
        progress(api.CHATGLM, 0, 1)
        answer = _text(self.call_model(api.CHATGLM, {api.PROMPT: _bytes(flow.music_prompt_request(caption))},
                                       [api.TEXT])[api.TEXT])
        progress(api.CHATGLM, 1, 1)
        prompt = flow.audio_prompt(flow.music_prompt_from_answer(answer), caption, api.MAX_PROMPT_BYTES)
        if not prompt.strip():
            raise StageError(api.CHATGLM, "neither the music prompt nor the caption has any text to render")
        check(api.TEXT2MUSIC)
        progress(api.DENOISE, 0, request.options.num_inference_steps)
        outputs = self.call_audio({api.PROMPT: _bytes(prompt), **audio_option_tensors(request.options)},
                                  [t.name for t in api.AUDIO_OUTPUTS], progress)
        return ImageMusic(caption, prompt, outputs)
