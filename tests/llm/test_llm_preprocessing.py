"""The framework-free tokenizers and image preprocessing give exactly what paddlenlp's give."""
import io

import numpy as np
import pytest
from PIL import Image

from musicgen.llm import prompts
from musicgen.llm.feeds import chatglm_prompt_inputs
from musicgen.llm.image import ImagePreprocessConfig, preprocess_image
from musicgen.llm.recipes import TOKENIZER_DIR, ChatGLMRecipe
from musicgen.llm.tokenizers import SentencePieceTokenizer
from musicgen_client import flow
from musicgen_client import interface as api

TEXTS = [
    prompts.MINIGPT4_PROMPT,
    *prompts.split_prompt(prompts.MINIGPT4_QUESTION),
    flow.music_prompt_request("The image shows a pineapple cocktail on a marble table. The drink is poured into it."),
    "two lines\nand a\ttab,   three spaces and    four",
    "specials inline: a</s>b <unk> c[gMASK]d  <sop> e [MASK]<eop><pad> <s>end",
    "Unicode: café, naïve, 音乐, 😀 ###Human## # isn't it?",
    "  leading and trailing spaces  ",
    "",
]


@pytest.fixture(scope="module")
def tokenizer_pairs(llm_build, eager_minigpt4, eager_chatglm):
    """(ours, paddlenlp's) per family."""
    repo = llm_build.repository
    return {
        "llama": (SentencePieceTokenizer.load(repo / api.CAPTION / "1" / TOKENIZER_DIR), eager_minigpt4[1].tokenizer),
        "chatglm": (SentencePieceTokenizer.load(repo / api.CHATGLM / "1" / TOKENIZER_DIR), eager_chatglm[1]),
    }


@pytest.mark.parametrize("kind", ["llama", "chatglm"])
def test_encode_matches_paddlenlp(tokenizer_pairs, kind):
    ours, theirs = tokenizer_pairs[kind]
    for text in TEXTS:
        for special in (True, False):
            expected = theirs(text, add_special_tokens=special)["input_ids"]
            assert ours.encode(text, add_special_tokens=special) == expected, (text, special)


@pytest.mark.parametrize("kind", ["llama", "chatglm"])
def test_decode_matches_paddlenlp_on_random_ids(tokenizer_pairs, kind):
    ours, theirs = tokenizer_pairs[kind]
    rng = np.random.default_rng(0)
    vocab = theirs.vocab_size
    samples = [rng.integers(0, vocab, size=n).tolist() for n in (1, 5, 30, 80) for _ in range(10)]
    samples += [theirs(text)["input_ids"] for text in TEXTS]
    for ids in samples:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), (ids, skip)


def test_chatglm_prompt_inputs_match_the_tokenizer(llm_build, eager_chatglm):
    """Ids, 2-D positions and prefix mask, for one prompt and for a left-padded batch of two."""
    _, tokenizer = eager_chatglm
    recipe = ChatGLMRecipe(llm_build.repository / api.CHATGLM / "1", run_stage=None)
    texts = [flow.music_prompt_request("a cat on a table"), flow.music_prompt_request("a much longer scene with two dogs")]
    for batch in ([texts[0]], texts):
        theirs = tokenizer(batch, return_tensors="np", padding=True, max_length=2048, truncation=True,
                           truncation_side="left")
        ours = chatglm_prompt_inputs([recipe.prompt_ids(t) for t in batch], tokenizer.bos_token_id,
                                     tokenizer.mask_token_id, tokenizer.gmask_token_id, tokenizer.pad_token_id)
        for name in ("input_ids", "position_ids", "attention_mask"):
            np.testing.assert_array_equal(ours[name], np.asarray(theirs[name]), err_msg=name)


def _images():
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (20, 33, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (64, 40), dtype=np.uint8), "L")
    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG", quality=90)
    png = io.BytesIO()
    rgba.save(png, format="PNG")
    return {"rgb": rgb, "rgba": rgba, "gray": gray, "jpeg-bytes": jpeg.getvalue(), "png-bytes": png.getvalue()}


@pytest.mark.parametrize("size", [{"height": 32, "width": 32}, {"height": 24, "width": 40}])
def test_image_preprocessing_matches_the_processor(size):
    """Bit-exact pixel_values, including a non-square size (the processor swaps height and width)."""
    from paddlenlp.transformers import MiniGPT4ImageProcessor

    processor = MiniGPT4ImageProcessor(size=size)
    config = ImagePreprocessConfig.from_processor_config(processor.to_dict())
    for name, image in _images().items():
        pil = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
        expected = processor(pil, return_tensors="np")["pixel_values"]
        ours = preprocess_image(image, config)
        assert ours.dtype == np.float32 and ours.shape == expected.shape, name
        np.testing.assert_array_equal(ours, expected, err_msg=name)


def test_preprocess_constants_are_written_beside_the_image_encoder(llm_build):
    repo = llm_build.repository
    beside_graph = ImagePreprocessConfig.load(repo / api.MINIGPT4_IMAGE_ENCODER / "1" / "image_preprocess.json")
    assert beside_graph == ImagePreprocessConfig.load(repo / api.CAPTION / "1" / "image_preprocess.json")
    assert beside_graph.resample == 3 and beside_graph.size == (32, 32)  # bicubic, the tiny ViT's size
