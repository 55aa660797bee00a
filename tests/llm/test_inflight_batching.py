"""In-flight batching over the real tiny step graphs: a request's tokens are the same alone (its own KV cache) and
in a running batch that others join and leave at different steps (other prompts and lengths, configs, budgets
and stop ids), and equal eager paddlenlp's `generate` for the requests decoded as the original does.
"""
import pytest

from musicgen.llm.engine import LLMEngineLimits
from musicgen.llm.recipes import CaptionRecipe, ChatGLMRecipe
from musicgen.runtime import RuntimeOptions
from musicgen.stage_graphs import InProcessGraphs
from musicgen_client import flow
from musicgen_client import interface as api
from test_token_parity import LLM_GRAPHS, eager_caption, eager_music_prompt, png

NEW_TOKENS = 16
CAPTIONS = ["The image shows a cat on a marble table", "two dogs", "a long quiet road through a forest at dusk, "
            "with rain on the windscreen and a radio playing softly", "sunrise"]


@pytest.fixture(scope="module", params=["onnxruntime", "paddle"])
def graphs(request, llm_build):
    return InProcessGraphs(llm_build.repository, LLM_GRAPHS, RuntimeOptions(backend=request.param))


def run_staggered(recipe, prepared, max_active):
    """Submit each prepared (feeds, config) one engine iteration after the other and decode to the end."""
    engine = recipe.decoder.batched(LLMEngineLimits(max_active=max_active))
    futures = []
    for feeds, generation in prepared:
        futures.append(engine.submit(feeds, generation))
        engine.step()
    for _ in range(500):
        if all(f.done() for f in futures):
            break
        engine.step()
    recipe.decoder.engine = None  # back to decoding alone
    return [f.result() for f in futures]


def chatglm_configs(recipe):
    base = recipe.config.generation.updated(max_new_tokens=NEW_TOKENS)  # the original's: top_k 1, greedy in effect
    return [base, base.updated(max_new_tokens=5),
            base.updated(top_k=4, temperature=0.8, seed=7), base.updated(repetition_penalty=1.3, max_new_tokens=11)]


@pytest.mark.parametrize("max_active", [2, 4])
def test_chatglm_tokens_batched_equal_alone_and_eager(llm_build, graphs, eager_chatglm, max_active):
    recipe = ChatGLMRecipe(llm_build.repository / api.CHATGLM / "1", graphs, graphs.step(api.CHATGLM_LLM_STEP))
    texts = [flow.music_prompt_request(caption) for caption in CAPTIONS]
    configs = chatglm_configs(recipe)
    alone = [recipe(text, config).token_ids for text, config in zip(texts, configs)]
    prepared = [(recipe.prepare(text, config)[1], config) for text, config in zip(texts, configs)]
    batched = [result.row(0) for result in run_staggered(recipe, prepared, max_active)]
    assert batched == alone
    assert [len(tokens) for tokens in alone] == [NEW_TOKENS, 5, NEW_TOKENS, 11]
    for caption, tokens in zip(CAPTIONS[:2], alone[:2]):  # the original's settings: eager's tokens
        eager, _ = eager_music_prompt(eager_chatglm, caption, len(tokens))
        assert tokens == eager


def test_caption_tokens_batched_equal_alone_and_eager(llm_build, graphs, eager_minigpt4):
    recipe = CaptionRecipe(llm_build.repository / api.CAPTION / "1", graphs, graphs.step(api.MINIGPT4_LLM_STEP))
    images = [png(seed) for seed in range(4)]
    free = recipe.config.generation.updated(max_new_tokens=NEW_TOKENS, stop_token_ids=())
    second = recipe(images[1], free).token_ids
    configs = [recipe.config.generation.updated(max_new_tokens=NEW_TOKENS),
               free.updated(stop_token_ids=(second[6],)),  # stops early: leaves while the others decode
               free.updated(max_new_tokens=9, repetition_penalty=1.5),
               free.updated(decode_strategy="sampling", top_p=0.9, seed=3)]
    alone = [recipe(image, config).token_ids for image, config in zip(images, configs)]
    batched = run_staggered(recipe, [(recipe.prepare(image, config), config) for image, config in zip(images, configs)],
                            max_active=3)
    assert [result.row(0) for result in batched] == alone
    assert len(alone[1]) <= 7 and len(alone[2]) == 9
    eager, answer = eager_caption(eager_minigpt4, images[0], NEW_TOKENS, configs[0].stop_token_ids)
    assert alone[0] == eager and recipe.caption_of(batched[0]).answer == answer
