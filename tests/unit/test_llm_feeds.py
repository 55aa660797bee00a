"""The LLM step-input builders on their own: masks, positions and cache plumbing per step (numpy only).

The token-parity tests (tests/llm) check them end to end against paddlenlp; these pin the quirks down.
"""
import numpy as np

from musicgen.llm.feeds import ChatGLMFeeds, LlamaEmbedsFeeds, chatglm_prompt_inputs
from musicgen.llm.prompts import caption_from_answer, split_prompt
from musicgen_client.flow import music_prompt_from_answer

def test_llama_embeds_prefill_puts_every_position_at_zero_and_masks_causally():
    embeds = np.ones((1, 4, 8), dtype=np.float32)
    feeds = LlamaEmbedsFeeds(embeds, np.ones((1, 4)), embed=None, bos_token_id=1).prefill()
    assert feeds["position_ids"].tolist() == [[0, 0, 0, 0]]  # paddlenlp 2.8.1's generate(inputs_embeds=...)
    np.testing.assert_array_equal(feeds["attention_mask"][0, 0], np.tril(np.ones((4, 4))))
    assert "past_key_values" not in feeds  # the step owns the cache


def test_llama_embeds_decode_step_t_is_at_position_t_and_embeds_the_token():
    seen = []

    def embed(ids):
        seen.append(ids.tolist())
        return np.full((*ids.shape, 8), 2.0, dtype=np.float32)

    builder = LlamaEmbedsFeeds(np.ones((1, 5, 8)), np.ones((1, 5)), embed, bos_token_id=1)
    first = builder.decode(np.array([[7]]))
    second = builder.decode(np.array([[9]]))
    assert first["position_ids"].tolist() == [[1]] and second["position_ids"].tolist() == [[2]]
    assert first["attention_mask"].shape == (1, 1, 1, 6) and second["attention_mask"].shape == (1, 1, 1, 7)
    assert seen == [[[7]], [[9]]]
    assert builder.context_ids().tolist() == [[1]]  # repetition penalty sees [bos], as paddlenlp's does


def test_chatglm_inputs_follow_the_prefix_lm_layout():
    # context "a b [gMASK]" (ids 10 11 5), then <sop>=7 and one more token
    inputs = chatglm_prompt_inputs([[10, 11, 5, 7, 12]], bos_token_id=7, mask_token_id=4, gmask_token_id=5, pad_token_id=3)
    mask = inputs["attention_mask"][0, 0]
    assert mask[:, :3].all() and mask[3].tolist() == [1, 1, 1, 1, 0] and mask[4].all()
    assert inputs["position_ids"][0].tolist() == [[0, 1, 2, 2, 2], [0, 0, 0, 1, 2]]


def test_chatglm_batches_are_left_padded():
    inputs = chatglm_prompt_inputs([[10, 5, 7], [10, 11, 12, 5, 7]], 7, 4, 5, 3)
    assert inputs["input_ids"].tolist() == [[3, 3, 10, 5, 7], [10, 11, 12, 5, 7]]
    assert not inputs["attention_mask"][0, 0, :2].any() and not inputs["attention_mask"][0, 0, :, :2].any()
    assert inputs["position_ids"][0].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]]


def test_chatglm_decode_appends_a_mask_column_and_advances_the_block_position():
    inputs = chatglm_prompt_inputs([[10, 11, 5, 7]], 7, 4, 5, 3)
    builder = ChatGLMFeeds(inputs)
    assert builder.prefill()["attention_mask"].shape == (1, 1, 4, 4) and "past_key_values" not in builder.prefill()
    first = builder.decode(np.array([[20]]))
    second = builder.decode(np.array([[21]]))
    assert first["position_ids"].tolist() == [[[2], [2]]] and second["position_ids"].tolist() == [[[2], [3]]]
    assert first["attention_mask"].tolist() == [[[[1, 1, 1, 1, 1]]]]
    assert second["attention_mask"].shape == (1, 1, 1, 6) and first["input_ids"].tolist() == [[20]]


def test_the_original_post_processing():
    assert split_prompt("describe the image, ")[1].startswith("</Img> describe the image, ###Assistant:")
    assert caption_from_answer("A cat sits.###Human") == "A cat sits."
    assert music_prompt_from_answer("Style: calm piano\nsecond line") == "calm piano"
    assert music_prompt_from_answer("\n") == ""
