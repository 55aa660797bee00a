"""The glue between the image → music stages, as the original PaddleMIX application writes it.

Shared by the server's `image2music` orchestrator and the client's stage-by-stage mode (each stage on its own
endpoint), so both ask ChatGLM the same question and cut its answer the same way. No third-party imports.
"""

from .interface import MAX_PROMPT_BYTES

# Verbatim, TWO spaces before "Description": the tokens must match the original's.
MUSIC_PROMPT_TEMPLATE = (
    "Given the scene description in the following paragraph, please create a musical style sentence that fits "
    "the scene.  Description:{}."
)


def acceptable_text(text: str, max_bytes: int) -> str:
    """Text one stage generated, made a valid input of the next: NULs dropped (a random or broken model can
    decode one; every text input refuses them), cut on a character boundary to `max_bytes` of UTF-8."""
    return text.replace("\x00", "").encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def music_prompt_request(caption: str, max_bytes: int = MAX_PROMPT_BYTES) -> str:
    """What ChatGLM is asked, for an image's caption (made acceptable as its prompt input)."""
    return acceptable_text(MUSIC_PROMPT_TEMPLATE.format(caption), max_bytes)


def music_prompt_from_answer(answer: str) -> str:
    """The original ChatGlmTask's post-processing: the answer's first line, after its last ':', stripped."""
    return answer.split("\n")[0].split(":")[-1].strip()


def audio_prompt(music_prompt: str, caption: str, max_bytes: int) -> str:
    """What AudioLDM renders: the music prompt, made acceptable to text2music.

    The original passes ChatGLM's cut answer on unchanged. When that cut is blank (an answer that is only a
    label, or a model that rambles), the caption is rendered instead; made acceptable (`acceptable_text`; CLAP
    reads at most 512 tokens anyway). Empty only when both texts are.
    """
    return acceptable_text(music_prompt if music_prompt.strip() else caption, max_bytes)
