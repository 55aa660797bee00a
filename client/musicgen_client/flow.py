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
