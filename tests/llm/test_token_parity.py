"""Greedy decoding over the exported graphs gives paddlenlp's eager `generate` token for token.

The eager side is called the way the original PaddleMIX flow calls it (musicgen.llm.prompts): MiniGPT4
through `MiniGPT4ForConditionalGeneration.generate` on the processor's inputs with MiniGPT4Task's kwargs;
ChatGLM through `ChatGLMForCausalLM.generate` with the ChatGLM Taskflow's tokenization and kwargs. Only
max_new_tokens is lowered (the same on both sides) to keep the tests fast. Each runs on both graph formats and
both ways a stage reaches its step graph: in process (the runtime reads the stage's KV cache buffers in place, the
served default) and through `run_stage` (the buffers sent as numpy feeds, as over BLS).
"""
import io

import numpy as np
import pytest
from PIL import Image

from musicgen.llm import prompts
from musicgen.llm.feeds import ChatGLMFeeds, chatglm_prompt_inputs
from musicgen.llm.kv_cache import CachedStep, KVCache
from musicgen.llm.step_session import OrtStepSession
from musicgen.llm.recipes import CaptionRecipe, ImageToMusicPrompt, ChatGLMRecipe, TextGenConfig
from musicgen.stage_graphs import InProcessGraphs, ServedGraphs
from musicgen.runtime import RuntimeOptions, local_stage_runner
from musicgen_client import flow
from musicgen_client import interface as api

NEW_TOKENS = 24
BACKENDS = ["onnxruntime", "paddle"]
LLM_GRAPHS = [c.name for c in api.MINIGPT4_COMPONENTS + api.CHATGLM_COMPONENTS]
# MiniGPT4Task's generate kwargs, less max_length and eos_token_id (set per test).
MINIGPT4_KWARGS = dict(num_beams=1, top_p=1.0, top_k=0, repetition_penalty=1.0, length_penalty=0.0, temperature=1.0,
                       decode_strategy="greedy_search")


def png(seed: int, size=(48, 64)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module", params=[(b, p) for b in BACKENDS for p in ("in_process", "served")],
                ids=lambda param: "-".join(param))
def graphs(request, llm_build):
    """`graphs(name, feeds)` runs a graph, `graphs.step(name)` is a step graph as the decoding loop calls it."""
    backend, path = request.param
    options = RuntimeOptions(backend=backend)
    if path == "in_process":
        return InProcessGraphs(llm_build.repository, LLM_GRAPHS, options)
    return ServedGraphs(local_stage_runner(llm_build.repository, LLM_GRAPHS, options))


def caption_recipe(llm_build, graphs) -> CaptionRecipe:
    return CaptionRecipe(llm_build.repository / api.CAPTION / "1", graphs, graphs.step(api.MINIGPT4_LLM_STEP))


def chatglm_recipe(llm_build, graphs) -> ChatGLMRecipe:
    return ChatGLMRecipe(llm_build.repository / api.CHATGLM / "1", graphs, graphs.step(api.CHATGLM_LLM_STEP))


@pytest.fixture(scope="module")
def caption_config(llm_build) -> TextGenConfig:
    return TextGenConfig.load(llm_build.repository / api.CAPTION / "1")


@pytest.fixture(scope="module")
def music_config(llm_build) -> TextGenConfig:
    return TextGenConfig.load(llm_build.repository / api.CHATGLM / "1")


def nested_eos(stop_ids):
    """Our flat stop set in the original's nested shape: [[835], [2277, 29937]]."""
    return [[stop_ids[0]], list(stop_ids[1:])]


def eager_caption(eager_minigpt4, image_bytes, max_new_tokens, stop_ids):
    model, processor = eager_minigpt4
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    inputs = processor([image], prompts.MINIGPT4_QUESTION, prompts.MINIGPT4_PROMPT)
    ids, _ = model.generate(**inputs, max_length=max_new_tokens, eos_token_id=nested_eos(stop_ids), **MINIGPT4_KWARGS)
    return ids[0].tolist(), processor.batch_decode(ids)[0]


def eager_music_prompt(eager_chatglm, caption, max_new_tokens):
    model, tokenizer = eager_chatglm
    inputs = tokenizer([flow.music_prompt_request(caption)], return_tensors="pd", padding=True, max_length=2048,
                       truncation=True, truncation_side="left")
    ids, _ = model.generate(
        **inputs, decode_strategy="sampling", top_k=1, top_p=1.0, temperature=1.0, max_length=max_new_tokens,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        num_return_sequences=1, use_cache=True,
    )
    return ids[0].tolist(), tokenizer.decode(ids[0].tolist(), skip_special_tokens=True).strip("\n")


def test_assets_carry_the_original_generation_parameters(caption_config, music_config):
    caption = caption_config.generation
    assert (caption.max_new_tokens, caption.decode_strategy, caption.repetition_penalty) == (300, "greedy_search", 1.0)
    assert len(caption.stop_token_ids) == 3  # the pieces "###", "##", "#"
    assert caption_config.prompt_template == prompts.MINIGPT4_PROMPT and caption_config.question == "describe the image, "
    music = music_config.generation
    assert (music.max_new_tokens, music.decode_strategy, music.top_k, music.top_p, music.temperature) == (
        2048, "sampling", 1, 1.0, 1.0)
    assert music_config.prompt_template == "{}"  # ChatGLM takes the prompt as given
    assert "scene.  Description:{}." in flow.MUSIC_PROMPT_TEMPLATE  # two spaces, as the original


@pytest.mark.parametrize("seed", [0, 1])
def test_minigpt4_caption_tokens_equal_eager(llm_build, graphs, eager_minigpt4, caption_config, seed):
    image = png(seed)
    config = caption_config.generation.updated(max_new_tokens=NEW_TOKENS)
    ours = caption_recipe(llm_build, graphs)(image, config)
    ids, answer = eager_caption(eager_minigpt4, image, NEW_TOKENS, config.stop_token_ids)
    assert len(ids) >= 16
    assert ours.token_ids == ids
    assert ours.answer == answer and ours.caption == answer.split("#")[0]


def test_minigpt4_stops_where_eager_stops(llm_build, graphs, eager_minigpt4, caption_config):
    """A stop id in the second, two-id group of the nested list ends the row on its own, in both."""
    image = png(2)
    free, _ = eager_caption(eager_minigpt4, image, NEW_TOKENS, caption_config.generation.stop_token_ids)
    stop = free[10]
    stop_ids = caption_config.generation.stop_token_ids[:2] + (stop,)
    ids, answer = eager_caption(eager_minigpt4, image, NEW_TOKENS, stop_ids)
    assert ids == free[: free.index(stop) + 1]
    config = caption_config.generation.updated(max_new_tokens=NEW_TOKENS, stop_token_ids=stop_ids)
    ours = caption_recipe(llm_build, graphs)(image, config)
    assert ours.token_ids == ids and ours.answer == answer


@pytest.mark.parametrize("caption", ["The image shows a cat on a marble table", "two dogs walk along the beach\nat night"])
def test_chatglm_tokens_equal_eager(llm_build, graphs, eager_chatglm, music_config, caption):
    config = music_config.generation.updated(max_new_tokens=NEW_TOKENS)
    ours = chatglm_recipe(llm_build, graphs)(flow.music_prompt_request(caption), config)
    ids, answer = eager_music_prompt(eager_chatglm, caption, NEW_TOKENS)
    assert len(ids) >= 16
    assert ours.token_ids == ids
    assert ours.text == answer
    assert len(set(ids)) > 4  # the tiny model does not just repeat one token: the cache is exercised


def test_image_to_music_prompt_equals_the_eager_chain(llm_build, graphs, eager_minigpt4, eager_chatglm,
                                                      caption_config, music_config):
    """Encoded image → caption → music prompt, over local graphs, gives the eager models' strings. The caption
    decodes with the exported defaults (this image's tiny caption ends on a "###" stop piece)."""
    image = png(5, size=(30, 90))
    music_gen = music_config.generation.updated(max_new_tokens=NEW_TOKENS)
    caption, music = ImageToMusicPrompt.from_repository(llm_build.repository, graphs, graphs.step)(image, None, music_gen)

    ids, answer = eager_caption(eager_minigpt4, image, caption_config.generation.max_new_tokens,
                                caption_config.generation.stop_token_ids)
    assert ids[-1] in caption_config.generation.stop_token_ids and len(ids) >= 16
    assert caption.token_ids == ids and caption.caption == answer.split("#")[0]
    _, music_answer = eager_music_prompt(eager_chatglm, caption.caption, NEW_TOKENS)
    assert music.prompt == flow.MUSIC_PROMPT_TEMPLATE.format(caption.caption)
    assert music.music_prompt == music_answer.split("\n")[0].split(":")[-1].strip()


def test_a_cancelled_caption_stops_at_the_next_token(llm_build, graphs):
    """The client goes away after 3 tokens: the loop runs no 4th step."""
    from musicgen.protocol import CancelledError

    asked = []
    recipe = caption_recipe(llm_build, graphs)
    config = recipe.config.generation.updated(max_new_tokens=NEW_TOKENS, stop_token_ids=())
    with pytest.raises(CancelledError, match="after 3 of at most 24"):
        recipe(png(0), config, keep_going=lambda: asked.append(1) or len(asked) <= 3)


def test_chatglm_budget_past_the_cache_is_refused_before_any_step(llm_build, graphs, music_config):
    from musicgen.protocol import InvalidRequestError

    recipe = chatglm_recipe(llm_build, graphs)
    prompt = flow.music_prompt_request("a cat")
    room = music_config.max_context_tokens - len(recipe.prompt_ids(prompt))
    with pytest.raises(InvalidRequestError, match=f"max_new_tokens: {room + 1} is out of range: allowed 1 to {room}"):
        recipe(prompt, music_config.generation.updated(max_new_tokens=room + 1),
               keep_going=lambda: pytest.fail("no step may run"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_process_steps_read_the_cache_buffers_in_place(llm_build, backend):
    """The session hands the runtime the KVCache's own memory (same data pointer: no copy of the cache), and a
    decode step writes one position into the same buffers, which keep their identity across steps."""
    graphs = InProcessGraphs(llm_build.repository, [api.CHATGLM_LLM_STEP], RuntimeOptions(backend=backend))
    session = graphs.step(api.CHATGLM_LLM_STEP)
    recipe = chatglm_recipe(llm_build, graphs)
    tok = recipe.tokenizer
    ids = recipe.prompt_ids(flow.music_prompt_request("a cat"))
    feeds = ChatGLMFeeds(chatglm_prompt_inputs([ids], tok.bos_token_id, tok.mask_token_id, tok.gmask_token_id,
                                               tok.pad_token_id))
    cache = KVCache(recipe.config.kv, rows=1, chunk=64)
    step = CachedStep(session, cache)
    logits = step(feeds.prefill())
    buffers = cache.buffers()
    before = [buffer.copy() for buffer in buffers]
    step(feeds.decode(logits.argmax(-1)[:, None].astype(np.int64)))
    after = cache.buffers()
    length = len(ids)
    for old, new, kept in zip(buffers, after, before):
        assert new.ctypes.data == old.ctypes.data  # the same memory: nothing reallocated within a chunk
        np.testing.assert_array_equal(new[:, :, :length], kept[:, :, :length])  # what was written stays
        assert np.abs(new[:, :, length]).sum() > 0 and not kept[:, :, length].any()  # one new position
    wrap = session.bound if isinstance(session, OrtStepSession) else session.tensor
    for buffer in after:
        assert wrap(buffer).data_ptr() == buffer.ctypes.data
