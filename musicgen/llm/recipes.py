"""Image → caption (MiniGPT4) → music prompt (ChatGLM) over exported graphs, with no deep-learning framework.

Each recipe reads as the original application's steps and drives its graphs through `run_stage(name, feeds)
-> outputs` (local graphs in tests and benchmarks, BLS calls inside Triton) and its step graph through a
`TokenDecoder`: alone (`generate` over the request's own KV cache) or, once `decoder.batched(limits)` made its
in-flight engine (musicgen.llm.engine), sharing decode steps with concurrent requests — the same tokens either
way. A recipe's `prepare` (prompt → a sequence's feeds) and its answer step are apart so that a served stage can
hand the sequence to the engine and answer when its future completes. Every token loop takes `keep_going`
(cancellation) and refuses, with a 400 naming `max_new_tokens`, a budget past what the stage's cache is sized for
(`max_context_tokens`). Everything a recipe needs besides the graphs lives in its asset folder, written by export:
`caption/1/` and `chatglm/1/` hold the tokenizer, `CONFIG_FILE` (prompt template, generation parameters, KV-cache
dims) and, for the caption, the image preprocessing constants. How a caption becomes ChatGLM's question, and its
answer the music prompt, is the flow's business (musicgen_client.flow), not ChatGLM's.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from musicgen_client import flow
from musicgen_client import interface as api

from ..inflight import EngineObserver
from ..generation import FeedsBuilder, GenerationConfig, GenerationResult, KeepGoing, generate
from ..protocol import InvalidRequestError
from . import prompts
from .engine import LLMEngine, LLMEngineLimits
from .feeds import ChatGLMFeeds, KVShape, LlamaEmbedsFeeds, chatglm_prompt_inputs
from .image import PREPROCESS_FILE, ImagePreprocessConfig, preprocess_image
from .kv_cache import CachedStep, GraphRun, KVCache
from .step_session import cache_dtype, checked_step, served_step
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

    def save(self, folder: Path) -> None:
        values = {"prompt_template": self.prompt_template, "generation": self.generation.to_dict(),
                  "kv": vars(self.kv), "question": self.question, "max_input_tokens": self.max_input_tokens,
                  "max_context_tokens": self.max_context_tokens}
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(values, indent=2))


class TokenDecoder:
    """A stage's step graph as its recipe decodes with it: `decoder(feeds, generation, keep_going)` runs a
    prepared sequence alone over its own KV cache, or through the in-flight engine once `batched` made one."""

    def __init__(self, run: GraphRun, name: str, config: TextGenConfig):
        self.run = run
        self.cache_dtype = cache_dtype(run)
        self.name = name
        self.kv = config.kv
        self.context_limit = config.max_context_tokens
        self.engine: Optional[LLMEngine] = None

    def batched(self, limits: LLMEngineLimits, observer: EngineObserver = EngineObserver()) -> LLMEngine:
        """From now on decode through an in-flight engine of `limits.max_active` rows (the caller runs its loop:
        `engine.start()` or `engine.step()`); `observer` gets its metrics."""
        self.engine = LLMEngine(self.run, self.kv, limits, name=self.name, context_limit=self.context_limit,
                                dtype=self.cache_dtype, observer=observer)
        return self.engine

    def __call__(self, feeds: FeedsBuilder, generation: GenerationConfig,
                 keep_going: Optional[KeepGoing] = None) -> GenerationResult:
        if self.engine is not None:
            return self.engine.generate(feeds, generation, keep_going)
        # Alone, the cache is bounded by what this request can write (the budget was checked by `prepare`).
        cache = KVCache(self.kv, rows=feeds.batch_size, limit=feeds.prompt_length + generation.max_new_tokens,
                        dtype=self.cache_dtype)
        return generate(CachedStep(checked_step(self.run, self.name), cache), feeds, generation, keep_going)


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
        self.decoder = TokenDecoder(step or served_step(run_stage, api.MINIGPT4_LLM_STEP), api.MINIGPT4_LLM_STEP,
                                    self.config)
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

    def prepare(self, image, generation: GenerationConfig) -> LlamaEmbedsFeeds:
        """image → the sequence to decode (400 when the prompt and the token budget exceed the cache's bound)."""
        pixel_values = preprocess_image(image, self.image_config)
        inputs_embeds = self.prompt_embeds(pixel_values)
        self.config.check_budget(inputs_embeds.shape[1], generation)
        mask = np.ones(inputs_embeds.shape[:2], dtype=np.int64)
        return LlamaEmbedsFeeds(inputs_embeds, mask, self.embed, self.tokenizer.bos_token_id)

    def caption_of(self, result: GenerationResult) -> Caption:
        answer = self.tokenizer.decode(result.row(0))  # the original keeps special tokens here
        return Caption(prompts.caption_from_answer(answer), answer, result.row(0))

    def __call__(self, image, generation: Optional[GenerationConfig] = None,
                 keep_going: Optional[KeepGoing] = None) -> Caption:
        generation = generation or self.config.generation
        return self.caption_of(self.decoder(self.prepare(image, generation), generation, keep_going))


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
        self.decoder = TokenDecoder(step or served_step(run_stage, api.CHATGLM_LLM_STEP), api.CHATGLM_LLM_STEP,
                                    self.config)

    def prompt_ids(self, prompt: str) -> List[int]:
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        limit = self.config.max_input_tokens
        if limit:
            special = len(self.tokenizer.with_special_tokens([]))
            ids = ids[max(0, len(ids) - (limit - special)):]  # truncation_side="left"
        return self.tokenizer.with_special_tokens(ids)

    def prepare(self, text: str, generation: GenerationConfig) -> Tuple[str, ChatGLMFeeds]:
        """text → (the prompt ChatGLM is asked, the sequence to decode); 400 past the cache's bound."""
        prompt = self.config.prompt_template.format(text)
        tok = self.tokenizer
        ids = self.prompt_ids(prompt)
        self.config.check_budget(len(ids), generation)
        inputs = chatglm_prompt_inputs([ids], tok.bos_token_id, tok.mask_token_id, tok.gmask_token_id, tok.pad_token_id)
        return prompt, ChatGLMFeeds(inputs)

    def text_of(self, prompt: str, result: GenerationResult) -> GeneratedText:
        answer = self.tokenizer.decode(result.row(0), skip_special_tokens=True).strip("\n")
        return GeneratedText(answer, prompt, result.row(0))

    def __call__(self, text: str, generation: Optional[GenerationConfig] = None,
                 keep_going: Optional[KeepGoing] = None) -> GeneratedText:
        generation = generation or self.config.generation
        prompt, feeds = self.prepare(text, generation)
        return self.text_of(prompt, self.decoder(feeds, generation, keep_going))


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
