"""What the original PaddleMIX image→music flow asks the two language models, and how it decodes, verbatim.

Source: PaddlePaddle/PaddleMIX, read at commit 6afaf05d (2024-10):
- `applications/MusicGeneration/README.md` (and PaddleTest `models/PaddleMIX/CE/application/music_generation.py`):
  `Appflow(app="music_generation", models=["miniGPT4/MiniGPT4-7B"])(image=..., minigpt4_text="describe the image, ")
  ["result"].split('#')[0]` gives the caption; then
  `"Given the scene description in the following paragraph, please create a musical style sentence that fits
  the scene.  Description:{}.".format(caption)` (two spaces before "Description" in the CE script and the
  README's second example) goes to `Appflow(app="music_generation", models=["THUDM/chatglm-6b", "cvssp/audioldm"])`.
- `paddlemix/appflow/image2text_generation.py`, `MiniGPT4Task`:
  prompt template `MINIGPT4_PROMPT` below (the processor puts the question at `<TextHere>`, splits at
  `<ImageHere>`: the part before is tokenized WITH the BOS token, the part after without, and the image's
  query embeddings go between them); `generate` kwargs: max_length=300, num_beams=1, top_p=1.0, top_k=0,
  repetition_penalty=1.0, length_penalty=0.0, temperature=1.0, decode_strategy="greedy_search",
  eos_token_id=[[835], [2277, 29937]]; the answer is `processor.batch_decode(ids)[0]` (special tokens kept).
  paddlenlp 2.8.1 reads max_length as max_new_tokens, and its `get_unfinished_flag` treats every id in that
  nested list as a stop token on its own (835 "###", 2277 "##", 29937 "#"), not as sequences: a match is
  `MINIGPT4_STOP_PIECES`. The model loads with paddlenlp's MiniGPT4 defaults: ViT and LLaMA in float16,
  Q-Former in float32 (we export float32: CPU needs it).
- `paddlemix/appflow/text2text_generation.py`, `ChatGlmTask`: `paddlenlp.Taskflow("text2text_generation",
  model="THUDM/chatglm-6b")(prompt)["result"][0]`, then the music prompt is
  `result.split("\\n")[0].split(":")[-1].strip()` (`music_prompt_from_answer`).
- paddlenlp 2.8.1 `taskflow/text2text_generation.py`, `ChatGLMTask` defaults: decode_strategy="sampling",
  top_k=1, top_p=1.0, temperature=1.0, max_length (=max_new_tokens) 2048, num_return_sequences=1, dtype
  float16; input tokenized with padding, max_length=2048, truncation_side="left"; eos/pad/bos from the
  tokenizer; output `decode(ids, skip_special_tokens=True).strip("\\n")`. Sampling with top_k=1 keeps only the
  most likely token: it decodes exactly as greedy (ties aside), whatever the seed. No repetition penalty.
"""
from __future__ import annotations

# ---- MiniGPT4: image → caption -------------------------------------------------------------------------
MINIGPT4_PROMPT = (
    "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to "
    "you. Please answer my questions.###Human: <Img><ImageHere></Img> <TextHere>###Assistant:"
)
MINIGPT4_QUESTION = "describe the image, "
IMAGE_TAG = "<ImageHere>"
TEXT_TAG = "<TextHere>"
# The original's eos_token_id=[[835], [2277, 29937]]: LLaMA's pieces "###", "##" and "#", each a stop token.
MINIGPT4_ORIGINAL_STOP_IDS = (835, 2277, 29937)
MINIGPT4_STOP_PIECES = ("###", "##", "#")
MINIGPT4_MAX_NEW_TOKENS = 300
CAPTION_SEPARATOR = "#"

# ---- ChatGLM: caption → music prompt ---------------------------------------------------------------------
# The question template and the answer's cut are in musicgen_client.flow: the client's stage-by-stage mode
# needs them too.
CHATGLM_MAX_NEW_TOKENS = 2048
CHATGLM_MAX_INPUT_TOKENS = 2048  # the Taskflow's max_seq_length: longer prompts lose their LEFT end
CHATGLM_TOP_K = 1


def split_prompt(question: str, template: str = MINIGPT4_PROMPT) -> tuple:
    """(text before the image, text after it), as MiniGPT4Processor assembles and splits the prompt."""
    first, second = template.replace(TEXT_TAG, question).split(IMAGE_TAG)
    return first, second


def caption_from_answer(answer: str) -> str:
    """The original keeps what MiniGPT4 says before its first '#' (the start of a "###" turn marker)."""
    return answer.split(CAPTION_SEPARATOR)[0]
