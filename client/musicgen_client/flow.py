"""The glue between the image → music stages, as the original PaddleMIX application writes it.

Shared by the server's `image2music` orchestrator and the client's stage-by-stage mode (each stage on its own
endpoint), so both ask ChatGLM the same question and cut its answer the same way. No third-party imports.
"""

# Verbatim, TWO spaces before "Description": the tokens must match the original's.
MUSIC_PROMPT_TEMPLATE = (
    "Given the scene description in the following paragraph, please create a musical style sentence that fits "
    "the scene.  Description:{}."
)


def music_prompt_request(caption: str) -> str:
    """What ChatGLM is asked, for an image's caption."""
    return MUSIC_PROMPT_TEMPLATE.format(caption)


def music_prompt_from_answer(answer: str) -> str:
    """The original ChatGlmTask's post-processing: the answer's first line, after its last ':', stripped."""
    return answer.split("\n")[0].split(":")[-1].strip()


def audio_prompt(music_prompt: str, caption: str, max_bytes: int) -> str:
    """What AudioLDM renders: the music prompt, made acceptable to text2music.

    The original passes ChatGLM's cut answer on unchanged. When that cut is blank (an answer that is only a
    label, or a model that rambles), the caption is rendered instead; NULs are dropped and the text is cut to
    `max_bytes` of UTF-8 (CLAP reads at most 512 tokens anyway). Empty only when both texts are.
    """
    text = (music_prompt if music_prompt.strip() else caption).replace("\x00", "")
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
