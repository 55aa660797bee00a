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
    def __init__(self, call_model: CallModel):
        self.call_model = call_model

    def __call__(self, request: ImageToMusicRequest, keep_going: Optional[Callable[[], bool]] = None) -> ImageMusic:
        def check(stage: str) -> None:
            if keep_going is not None and not keep_going():
                raise CancelledError(f"cancelled before {stage}")

        caption = _text(self.call_model(api.CAPTION, {api.IMAGE: np.array([request.image], dtype=object)},
                                        [api.CAPTION])[api.CAPTION])
        check(api.CHATGLM)
        answer = _text(self.call_model(api.CHATGLM, {api.PROMPT: _bytes(flow.music_prompt_request(caption))},
                                       [api.TEXT])[api.TEXT])
        prompt = flow.audio_prompt(flow.music_prompt_from_answer(answer), caption, api.MAX_PROMPT_BYTES)
        if not prompt.strip():
            raise StageError(api.CHATGLM, "neither the music prompt nor the caption has any text to render")
        check(api.TEXT2MUSIC)
        outputs = self.call_model(api.TEXT2MUSIC, {api.PROMPT: _bytes(prompt), **audio_option_tensors(request.options)},
                                  [t.name for t in api.AUDIO_OUTPUTS])
        return ImageMusic(caption, prompt, outputs)
