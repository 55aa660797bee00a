"""The served interface: model names, tensor names, dtypes and parameter ranges, defined once.

Shared by the export scripts, the model-repository generator, the orchestrators and this client, so a
renamed tensor breaks loudly everywhere at once. No third-party imports: the client stays light.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Tuple


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model, as it appears in config.pbtxt."""

    name: str
    datatype: str  # Triton datatype string: BYTES, FP32, INT32, INT64
    dims: Tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ParameterRange:
    """A scalar request parameter: its default and the closed range it must lie in."""

    name: str
    default: Optional[float]
    minimum: float
    maximum: float

    def problem(self, value: float) -> Optional[str]:
        """What is wrong with `value` (its value and the allowed range), or None when it is fine."""
        # One chained comparison rejects NaN and ±inf too, and compares huge ints exactly (no float cast).
        if not (self.minimum <= value <= self.maximum):
            return f"{value!r} is out of range: allowed {self.minimum} to {self.maximum}"
        return None

    def check(self, value: float) -> None:
        """Raise ValueError naming the field, the value and the allowed range."""
        problem = self.problem(value)
        if problem:
            raise ValueError(f"{self.name}: {problem}")


# ---- orchestrators -------------------------------------------------------------------------
TEXT2MUSIC = "text2music"
IMAGE2MUSIC = "image2music"

PROMPT = "prompt"
NEGATIVE_PROMPT = "negative_prompt"
NUM_INFERENCE_STEPS = "num_inference_steps"
AUDIO_LENGTH_IN_S = "audio_length_in_s"
GUIDANCE_SCALE = "guidance_scale"
SEED = "seed"
NUM_WAVEFORMS_PER_PROMPT = "num_waveforms_per_prompt"  # candidates per request, returned best first
AUDIO = "audio"
SAMPLING_RATE = "sampling_rate"
SCORES = "scores"  # one CLAP cosine similarity per candidate, descending
RANKING = "ranking"  # how the candidates were ordered, or why they were not: "clap" or "off: <reason>"
RANKING_CLAP = "clap"

# Longest prompt accepted, in UTF-8 bytes. CLAP truncates at its token limit anyway; this bound only
# keeps a hostile request from making the tokenizer chew megabytes.
MAX_PROMPT_BYTES = 4096

STEPS_RANGE = ParameterRange(NUM_INFERENCE_STEPS, 20, 1, 500)
LENGTH_RANGE = ParameterRange(AUDIO_LENGTH_IN_S, 5.0, 0.0, 30.0)  # the model adds its own minimum; 30 s: README "Limits"
GUIDANCE_RANGE = ParameterRange(GUIDANCE_SCALE, 2.5, 0.0, 30.0)  # <= 1 turns guidance off
SEED_RANGE = ParameterRange(SEED, None, 0, 2**63 - 1)  # no seed: the server draws one and returns it
CANDIDATES_RANGE = ParameterRange(NUM_WAVEFORMS_PER_PROMPT, 1, 1, 8)

AUDIO_OPTION_INPUTS = (
    TensorSpec(NEGATIVE_PROMPT, "BYTES", (1,), optional=True),
    TensorSpec(NUM_INFERENCE_STEPS, "INT32", (1,), optional=True),
    TensorSpec(AUDIO_LENGTH_IN_S, "FP32", (1,), optional=True),
    TensorSpec(GUIDANCE_SCALE, "FP32", (1,), optional=True),
    TensorSpec(SEED, "INT64", (1,), optional=True),
    TensorSpec(NUM_WAVEFORMS_PER_PROMPT, "INT32", (1,), optional=True),
)
AUDIO_OUTPUTS = (
    # [samples] when the request did not send num_waveforms_per_prompt (one waveform, as before candidates);
    # [k, samples] when it did, k = 1 included, best first.
    TensorSpec(AUDIO, "FP32", (-1, -1)),
    TensorSpec(SEED, "INT64", (1,)),
    TensorSpec(SAMPLING_RATE, "INT32", (1,)),
    TensorSpec(SCORES, "FP32", (-1,)),  # [k]; only while ranking is on
    TensorSpec(RANKING, "BYTES", (1,)),
)

# Encoded output (musicgen_client.audio_encoding holds the allowed values): with a file format, the response
# carries `audio_file` (the whole file) instead of `audio`; `sampling_rate` is the delivered rate either way.
AUDIO_FORMAT = "audio_format"
OUTPUT_SAMPLING_RATE = "output_sampling_rate"
LOUDNESS = "loudness"
LOUDNESS_TARGET = "loudness_target"
AUDIO_FILE = "audio_file"
AUDIO_ENCODING_INPUTS = (
    TensorSpec(AUDIO_FORMAT, "BYTES", (1,), optional=True),
    TensorSpec(OUTPUT_SAMPLING_RATE, "INT32", (1,), optional=True),
    TensorSpec(LOUDNESS, "BYTES", (1,), optional=True),
    TensorSpec(LOUDNESS_TARGET, "FP32", (1,), optional=True),
)
ENCODED_AUDIO_OUTPUTS = (TensorSpec(AUDIO_FILE, "BYTES", (-1,)),)  # one file per candidate, best first

TEXT2MUSIC_INPUTS = (TensorSpec(PROMPT, "BYTES", (1,)),) + AUDIO_OPTION_INPUTS + AUDIO_ENCODING_INPUTS
TEXT2MUSIC_OUTPUTS = AUDIO_OUTPUTS + ENCODED_AUDIO_OUTPUTS

# ---- image → music ------------------------------------------------------------------------------
IMAGE = "image"  # an encoded PNG or JPEG, whole file bytes
TEXT = "text"
MAX_NEW_TOKENS = "max_new_tokens"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Absent: the model's own default (the original application's: 300 for MiniGPT4, 2048 for ChatGLM).
MAX_NEW_TOKENS_RANGE = ParameterRange(MAX_NEW_TOKENS, None, 1, 4096)

# ---- AudioLDM components (each served on its own) --------------------------------------------
AUDIOLDM_TEXT_ENCODER = "audioldm_text_encoder"
AUDIOLDM_UNET = "audioldm_unet"
AUDIOLDM_VAE_DECODER = "audioldm_vae_decoder"
AUDIOLDM_VOCODER = "audioldm_vocoder"
AUDIOLDM_CLAP_AUDIO = "audioldm_clap_audio"  # optional: ranks candidates when exported


@dataclass(frozen=True)
class ComponentSpec:
    """A graph-backed component model: the tensors of its exported graph, in graph order."""

    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    # Batch-first in every tensor, with shapes that repeat across requests (not a token length or a growing
    # cache): the GPU path replays it as CUDA graphs.
    replayable: bool = False
    # An LLM step graph: its per-layer KV-cache inputs follow `inputs`, as many as the model has layers
    # (`with_cache_inputs`, once the weights say how many).
    kv_cache: bool = False

    def with_cache_inputs(self, layers: int) -> "ComponentSpec":
        """The spec of this step graph for a model of `layers` layers: `inputs` then the cache inputs."""
        if not self.kv_cache:
            raise ValueError(f"{self.name} takes no KV cache inputs")
        return replace(self, inputs=self.inputs + cache_inputs(layers), kv_cache=False)


AUDIOLDM_COMPONENTS = (
    ComponentSpec(
        AUDIOLDM_TEXT_ENCODER,
        inputs=(TensorSpec("input_ids", "INT64", (-1, -1)), TensorSpec("attention_mask", "INT64", (-1, -1))),
        outputs=(TensorSpec("text_embeds", "FP32", (-1, -1)),),  # L2-normalised CLAP projection
    ),
    ComponentSpec(
        AUDIOLDM_UNET,
        inputs=(
            TensorSpec("sample", "FP32", (-1, -1, -1, -1)),
            TensorSpec("timestep", "FP32", (-1,)),  # one per row of `sample`
            TensorSpec("class_labels", "FP32", (-1, -1)),
        ),
        outputs=(TensorSpec("noise_pred", "FP32", (-1, -1, -1, -1)),),
        replayable=True,
    ),
    ComponentSpec(
        AUDIOLDM_VAE_DECODER,
        inputs=(TensorSpec("latents", "FP32", (-1, -1, -1, -1)),),  # unscaled: the graph divides
        outputs=(TensorSpec("mel_spectrogram", "FP32", (-1, -1, -1)),),  # [batch, frames, mel bins]
        replayable=True,
    ),
    ComponentSpec(
        AUDIOLDM_VOCODER,
        inputs=(TensorSpec("mel_spectrogram", "FP32", (-1, -1, -1)),),
        outputs=(TensorSpec("waveform", "FP32", (-1, -1)),),
        replayable=True,
    ),
)

# CLAP's audio side, matching the text encoder: HTSAT + audio projection, L2-normalised (get_audio_features).
CLAP_AUDIO_COMPONENT = ComponentSpec(
    AUDIOLDM_CLAP_AUDIO,
    inputs=(TensorSpec("input_features", "FP32", (-1, 1, -1, -1)),),  # [batch, 1, frames, mel bins] log-mel
    outputs=(TensorSpec("audio_embeds", "FP32", (-1, -1)),),
)

# ---- image → music prompt: MiniGPT4 captions, ChatGLM writes the music prompt -----------------------------
CAPTION = "caption"  # served model: image → caption (MiniGPT4); also the name of its output
CHATGLM = "chatglm"  # served model: prompt → text (ChatGLM-6B)
MUSIC_PROMPT = "music_prompt"  # image2music's output: what ChatGLM wrote and AudioLDM rendered

CAPTION_INPUTS = (TensorSpec(IMAGE, "BYTES", (1,)), TensorSpec(MAX_NEW_TOKENS, "INT32", (1,), optional=True))
CAPTION_OUTPUTS = (TensorSpec(CAPTION, "BYTES", (1,)),)
CHATGLM_INPUTS = (TensorSpec(PROMPT, "BYTES", (1,)), TensorSpec(MAX_NEW_TOKENS, "INT32", (1,), optional=True))
CHATGLM_OUTPUTS = (TensorSpec(TEXT, "BYTES", (1,)),)
IMAGE2MUSIC_INPUTS = (TensorSpec(IMAGE, "BYTES", (1,)),) + AUDIO_OPTION_INPUTS + AUDIO_ENCODING_INPUTS
IMAGE2MUSIC_OUTPUTS = ((TensorSpec(CAPTION, "BYTES", (1,)), TensorSpec(MUSIC_PROMPT, "BYTES", (1,))) + AUDIO_OUTPUTS
                       + ENCODED_AUDIO_OUTPUTS)

# ---- streamed progress: the decoupled variants (gRPC streams or HTTP generate_stream; not /infer) --------
# Same inputs as their unary model; they answer with progress responses (stage, step of total), then one
# response with the unary model's outputs, flagged final. Stages, in order: caption, chatglm (image2music
# only, one step each: the LLM stages are unary models), denoise (one step per denoising step).
TEXT2MUSIC_STREAM = "text2music_stream"
IMAGE2MUSIC_STREAM = "image2music_stream"
STREAM_VARIANTS = {TEXT2MUSIC: TEXT2MUSIC_STREAM, IMAGE2MUSIC: IMAGE2MUSIC_STREAM}
STAGE = "stage"
STEP = "step"
TOTAL = "total"
DENOISE = "denoise"
PROGRESS_OUTPUTS = (TensorSpec(STAGE, "BYTES", (1,)), TensorSpec(STEP, "INT32", (1,)), TensorSpec(TOTAL, "INT32", (1,)))

MINIGPT4_IMAGE_ENCODER = "minigpt4_image_encoder"
MINIGPT4_EMBED_TOKENS = "minigpt4_embed_tokens"
MINIGPT4_LLM_STEP = "minigpt4_llm_step"
CHATGLM_LLM_STEP = "chatglm_llm_step"

# The LLM step graphs read the KV cache as 2 × layers inputs `past_key_<i>`, `past_value_<i>`
# [rows, heads, capacity, head_dim] (preallocated buffers, read only; the slots a row has not written are masked
# out by `attention_mask` [rows, 1, new, capacity + new]) and return only the step's new positions
# (`new_key_values`); the caller writes those into its buffers (musicgen.llm.kv_cache). Capacity 0 for a prefill.
NEW_KEY_VALUES = TensorSpec("new_key_values", "FP32", (-1, 2, -1, -1, -1, -1))  # [layers, 2, rows, heads, new, d]


def cache_input_names(layers: int) -> List[str]:
    """The step graph's cache inputs in graph order: past_key_0, past_value_0, past_key_1, ..."""
    return [f"past_{kind}_{layer}" for layer in range(layers) for kind in ("key", "value")]


def cache_inputs(layers: int) -> Tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name, "FP32", (-1, -1, -1, -1)) for name in cache_input_names(layers))


LAST_LOGITS = TensorSpec("logits", "FP32", (-1, -1))  # [batch, vocab], last position only

MINIGPT4_COMPONENTS = (
    ComponentSpec(
        MINIGPT4_IMAGE_ENCODER,
        inputs=(TensorSpec("pixel_values", "FP32", (-1, 3, -1, -1)),),  # preprocessed as `image_preprocess.json` says
        outputs=(TensorSpec("image_embeds", "FP32", (-1, -1, -1)),),  # [batch, query tokens, LLM hidden]
        replayable=True,
    ),
    ComponentSpec(
        MINIGPT4_EMBED_TOKENS,
        inputs=(TensorSpec("input_ids", "INT64", (-1, -1)),),
        outputs=(TensorSpec("inputs_embeds", "FP32", (-1, -1, -1)),),
    ),
    ComponentSpec(
        MINIGPT4_LLM_STEP,
        inputs=(
            TensorSpec("inputs_embeds", "FP32", (-1, -1, -1)),  # [batch, new positions, hidden]
            TensorSpec("attention_mask", "INT64", (-1, 1, -1, -1)),  # [batch, 1, new, capacity + new]; 1 = attend
            TensorSpec("position_ids", "INT64", (-1, -1)),  # [batch, new]
        ),
        outputs=(LAST_LOGITS, NEW_KEY_VALUES),
        kv_cache=True,
    ),
)
CHATGLM_COMPONENTS = (
    ComponentSpec(
        CHATGLM_LLM_STEP,
        inputs=(
            TensorSpec("input_ids", "INT64", (-1, -1)),  # [batch, new positions]
            TensorSpec("position_ids", "INT64", (-1, 2, -1)),  # ChatGLM's 2-D positions: [batch, (pos, block), new]
            TensorSpec("attention_mask", "INT64", (-1, 1, -1, -1)),  # [batch, 1, new, capacity + new]; 1 = attend
        ),
        outputs=(LAST_LOGITS, NEW_KEY_VALUES),
        kv_cache=True,
    ),
)

COMPONENTS_BY_NAME = {c.name: c for c in AUDIOLDM_COMPONENTS + (CLAP_AUDIO_COMPONENT,) + MINIGPT4_COMPONENTS
                      + CHATGLM_COMPONENTS}
