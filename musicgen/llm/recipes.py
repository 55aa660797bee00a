"""Image → caption (MiniGPT4) → music prompt (ChatGLM) over exported graphs, with no deep-learning framework.

Each recipe reads as the original application's steps and drives its graphs through `run_stage(name, feeds)
-> outputs` (local graphs in tests and benchmarks, BLS calls inside Triton) and its step graph through a raw
call `run(feeds) -> (logits, new_key_values)` (by default the served graph through `run_stage`; in process,
`musicgen.llm.step_session`) over a `KVCache` of its own per request, bounded by the prompt + `max_new_tokens`.
Every token loop takes `keep_going` (cancellation) and refuses, with a 400 naming `max_new_tokens`, a budget
past what the stage's cache is sized for (`max_context_tokens`). Everything a recipe needs
besides the graphs lives in its asset folder, written by export: `caption/1/` and `chatglm/1/` hold the
tokenizer, `CONFIG_FILE` (prompt template, generation parameters, KV-cache dims) and, for the caption, the
image preprocessing constants. How a caption becomes ChatGLM's question, and its answer the music prompt, is
the flow's business (musicgen_client.flow), not ChatGLM's.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from musicgen_client import flow
from musicgen_client import interface as api

from ..generation import FeedsBuilder, GenerationConfig, GenerationResult, KeepGoing, generate
from ..protocol import InvalidRequestError
from . import prompts
from .feeds import ChatGLMFeeds, KVShape, LlamaEmbedsFeeds, chatglm_prompt_inputs
from .image import PREPROCESS_FILE, ImagePreprocessConfig, preprocess_image
from .kv_cache import CachedStep, GraphRun, KVCache
from .step_session import checked_step, served_step
from .tokenizers import SentencePieceTokenizer

logger = logging.getLogger(__name__)

RunStage = Callable[[str, Dict[str, np.ndarray]], List[np.ndarray]]
CONFIG_FILE = "textgen.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class TextGenConfig:
    """One text-generation stage: its prompt, how it decodes, and the shape of its KV cache."""

    prompt_template: str
    generation: GenerationConfig
    kv: KVShape
    question: str = ""  # MiniGPT4: what is asked about the image (fills the template's <TextHere>)
    max_input_tokens: int = 0  # ChatGLM: longer prompts lose their left end; 0: no limit
    max_context_tokens: int = 0  # prompt + new tokens the cache (and the graph's positions) hold; 0: no limit

    @classmethod
    def load(cls, folder: Path) -> "TextGenConfig":
        values = json.loads((Path(folder) / CONFIG_FILE).read_text())
        return cls(**values | {"generation": GenerationConfig.from_dict(values["generation"]),
                               "kv": KVShape(**values["kv"])})

    def generation_for(self, max_new_tokens: Optional[int]) -> GenerationConfig:
        """The stage's decoding settings, with a request's own token budget when it sends one."""
        if max_new_tokens is None:
            return self.generation
        return self.generation.updated(max_new_tokens=max_new_tokens)

    def check_budget(self, prompt_tokens: int, generation: GenerationConfig) -> None:
        """400 when the prompt and `max_new_tokens` together exceed what the cache is sized for."""
        limit = self.max_context_tokens
        if limit and prompt_tokens + generation.max_new_tokens > limit:
            raise InvalidRequestError(
                api.MAX_NEW_TOKENS, f"{generation.max_new_tokens} is out of range: allowed 1 to "
                f"{max(limit - prompt_tokens, 0)} after this {prompt_tokens}-token prompt (this model holds "
                f"{limit} tokens of context)")

    def decode(self, run: GraphRun, feeds: FeedsBuilder, prompt_tokens: int, generation: GenerationConfig,
               keep_going: Optional[KeepGoing]) -> GenerationResult:
        """`generate` over `run` with a fresh cache, bounded by what this request can write (budget checked)."""
        self.check_budget(prompt_tokens, generation)
        cache = KVCache(self.kv, feeds.batch_size, limit=prompt_tokens + generation.max_new_tokens)
        return generate(CachedStep(run, cache), feeds, generation, keep_going)

    def save(self, folder: Path) -> None:
        values = {"prompt_template": self.prompt_template, "generation": self.generation.to_dict(),
                  "kv": vars(self.kv), "question": self.question, "max_input_tokens": self.max_input_tokens,
                  "max_context_tokens": self.max_context_tokens}
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(values, indent=2))


@dataclass
class Caption:
    caption: str  # what the music prompt is written from
    answer: str  # MiniGPT4's whole decoded answer
    token_ids: List[int]


class CaptionRecipe:
    """image → caption: preprocess, encode the image, embed the prompt around it, decode greedily, cut at '#'."""

    def __init__(self, assets: Path, run_stage: RunStage, step: Optional[GraphRun] = None):
        assets = Path(assets)
        self.config = TextGenConfig.load(assets)
        self.image_config = ImagePreprocessConfig.load(assets / PREPROCESS_FILE)
        self.tokenizer = SentencePieceTokenizer.load(assets / TOKENIZER_DIR)
        self.run_stage = run_stage
        self.step = checked_step(step or served_step(run_stage, api.MINIGPT4_LLM_STEP), api.MINIGPT4_LLM_STEP)
        first, second = prompts.split_prompt(self.config.question, self.config.prompt_template)
        # As MiniGPT4Processor: BOS before the text ahead of the image, none after it.
        self.first_ids = self.tokenizer.encode(first, add_special_tokens=True)
        self.second_ids = self.tokenizer.encode(second, add_special_tokens=False)
        self._text_embeds: Optional[np.ndarray] = None  # the prompt is fixed: embedded once, on first use

    def embed(self, ids: np.ndarray) -> np.ndarray:
        return self.run_stage(api.MINIGPT4_EMBED_TOKENS, {"input_ids": ids.astype(np.int64)})[0]

    def prompt_embeds(self, pixel_values: np.ndarray) -> np.ndarray:
        """[embed(text before), image embeds, embed(text after)] along the sequence."""
        image_embeds = self.run_stage(api.MINIGPT4_IMAGE_ENCODER, {"pixel_values": pixel_values})[0]
        if self._text_embeds is None:  # not in __init__: inside Triton the embedding graph is a BLS call
            self._text_embeds = self.embed(np.array([self.first_ids + self.second_ids]))
        text = self._text_embeds
        split = len(self.first_ids)
        return np.concatenate([text[:, :split], image_embeds, text[:, split:]], axis=1)

    def __call__(self, image, generation: Optional[GenerationConfig] = None,
                 keep_going: Optional[KeepGoing] = None) -> Caption:
        generation = generation or self.config.generation
        pixel_values = preprocess_image(image, self.image_config)
        inputs_embeds = self.prompt_embeds(pixel_values)
        mask = np.ones(inputs_embeds.shape[:2], dtype=np.int64)
        feeds = LlamaEmbedsFeeds(inputs_embeds, mask, self.embed, self.tokenizer.bos_token_id)
        result = self.config.decode(self.step, feeds, inputs_embeds.shape[1], generation, keep_going)
        answer = self.tokenizer.decode(result.row(0))  # the original keeps special tokens here
        return Caption(prompts.caption_from_answer(answer), answer, result.row(0))


@dataclass
class GeneratedText:
    text: str  # decoded without special tokens, stripped of newlines, as paddlenlp's ChatGLM Taskflow returns it
    prompt: str  # what ChatGLM was asked
    token_ids: List[int]


@dataclass
class MusicPrompt:
    music_prompt: str  # what AudioLDM is asked for
    answer: str  # ChatGLM's whole decoded answer
    prompt: str  # what ChatGLM was asked
    token_ids: List[int]


class ChatGLMRecipe:
    """prompt → text, as paddlenlp's ChatGLM Taskflow: tokenize (left truncation), decode, strip newlines."""

    def __init__(self, assets: Path, run_stage: Optional[RunStage], step: Optional[GraphRun] = None):
        assets = Path(assets)
        self.config = TextGenConfig.load(assets)
        self.tokenizer = SentencePieceTokenizer.load(assets / TOKENIZER_DIR)
        self.step = checked_step(step or served_step(run_stage, api.CHATGLM_LLM_STEP), api.CHATGLM_LLM_STEP)

    def prompt_ids(self, prompt: str) -> List[int]:
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        limit = self.config.max_input_tokens
        if limit:
            special = len(self.tokenizer.with_special_tokens([]))
            ids = ids[max(0, len(ids) - (limit - special)):]  # truncation_side="left"
        return self.tokenizer.with_special_tokens(ids)

    def __call__(self, text: str, generation: Optional[GenerationConfig] = None,
                 keep_going: Optional[KeepGoing] = None) -> GeneratedText:
        generation = generation or self.config.generation
        prompt = self.config.prompt_template.format(text)
        tok = self.tokenizer
        ids = self.prompt_ids(prompt)
        inputs = chatglm_prompt_inputs([ids], tok.bos_token_id, tok.mask_token_id, tok.gmask_token_id, tok.pad_token_id)
        result = self.config.decode(self.step, ChatGLMFeeds(inputs), len(ids), generation, keep_going)
        answer = tok.decode(result.row(0), skip_special_tokens=True).strip("\n")
        return GeneratedText(answer, prompt, result.row(0))


class ImageToMusicPrompt:
    """The whole LLM half of image → music: encoded image → (caption, music prompt)."""

    def __init__(self, caption: CaptionRecipe, chatglm: ChatGLMRecipe):
        self.caption = caption
        self.chatglm = chatglm

    @classmethod
    def from_repository(cls, repository: Path, run_stage: RunStage,
                        step_for: Optional[Callable[[str], GraphRun]] = None) -> "ImageToMusicPrompt":
        """`step_for(name)`: the step graphs' sessions (e.g. `InProcessGraphs.step`); None: through run_stage."""
        repository = Path(repository)
        step_for = step_for or (lambda name: None)
        return cls(CaptionRecipe(repository / api.CAPTION / "1", run_stage, step_for(api.MINIGPT4_LLM_STEP)),
                   ChatGLMRecipe(repository / api.CHATGLM / "1", run_stage, step_for(api.CHATGLM_LLM_STEP)))

    def __call__(self, image, caption_generation: Optional[GenerationConfig] = None,
                 prompt_generation: Optional[GenerationConfig] = None):
        caption = self.caption(image, caption_generation)
        answer = self.chatglm(flow.music_prompt_request(caption.caption), prompt_generation)
        music = MusicPrompt(flow.music_prompt_from_answer(answer.text), answer.text, answer.prompt, answer.token_ids)
        logger.info("caption %r → music prompt %r", caption.caption, music.music_prompt)
        return caption, music
