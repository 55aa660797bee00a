"""fp16 LLM graphs on a GPU: greedy tokens of the fp16 graphs on onnxruntime's CUDA provider against the fp32
graphs (CPU provider) and, where paddle has CUDA, against eager paddlenlp in fp16 (the original's dtypes: MiniGPT4's
ViT and LLaMA fp16, Q-Former fp32; ChatGLM fp16). Written for a session with a GPU, not run on the build machine:

    python -m export minigpt4 --preset tiny --out build/llm-fp16/model_repository \
        --weights-dir build/llm-fp16/weights --precision fp16
    python -m export chatglm --preset tiny --out build/llm-fp16/model_repository \
        --weights-dir build/llm-fp16/weights --precision fp16
    python benchmarks/gpu/llm_fp16_tokens.py --build build/llm-fp16 --new-tokens 24

(onnxruntime-gpu installed as benchmarks/gpu/components.sh does.) Prints, per stage and input, the tokens that agree
with fp32 before the first difference and, at a difference, fp32's top-2 margin against the fp16 logits' error at
that step (same context up to there); exits 1 if a difference is not within that noise (margin > 2 × error).
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path
from typing import List, Optional


ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "client")]

from export.token_agreement import compare_tokens, decode, random_image  # noqa: E402
from musicgen.llm.recipes import TextGenConfig  # noqa: E402
from musicgen.runtime import RuntimeOptions  # noqa: E402
from musicgen_client import flow  # noqa: E402
from musicgen_client import interface as api  # noqa: E402

logger = logging.getLogger("llm_fp16_tokens")
GRAPHS = [c.name for c in api.MINIGPT4_COMPONENTS + api.CHATGLM_COMPONENTS]
FP16 = dict.fromkeys(GRAPHS, "fp16")
CAPTIONS = ["The image shows a cat on a marble table", "two dogs walk along the beach at night"]


def eager_fp16(build: Path, preset: str, stage: str, request, new_tokens: int) -> Optional[List[int]]:
    """Eager paddlenlp generate in the original's fp16 dtypes on the GPU; None without a CUDA paddle."""
    import paddle

    if not paddle.is_compiled_with_cuda():
        return None
    paddle.set_device("gpu")
    from PIL import Image
    from musicgen.llm import prompts

    if stage == api.CAPTION:
        from paddlenlp.transformers import MiniGPT4ForConditionalGeneration, MiniGPT4Processor

        weights = str(build / "weights" / f"minigpt4-{preset}")
        model = MiniGPT4ForConditionalGeneration.from_pretrained(
            weights, vit_dtype="float16", qformer_dtype="float32", llama_dtype="float16")
        processor = MiniGPT4Processor.from_pretrained(weights)
        inputs = processor([Image.open(io.BytesIO(request)).convert("RGB")], prompts.MINIGPT4_QUESTION,
                           prompts.MINIGPT4_PROMPT)
        stop = TextGenConfig.load(build / "model_repository" / api.CAPTION / "1").generation.stop_token_ids
        ids, _ = model.eval().generate(**inputs, max_length=new_tokens, eos_token_id=[[stop[0]], list(stop[1:])],
                                       decode_strategy="greedy_search")
        return ids[0].tolist()
    from paddlenlp.transformers import ChatGLMForCausalLM, ChatGLMTokenizer

    weights = str(build / "weights" / f"chatglm-{preset}")
    model, tokenizer = ChatGLMForCausalLM.from_pretrained(weights, dtype="float16"), ChatGLMTokenizer.from_pretrained(weights)
    inputs = tokenizer([request], return_tensors="pd", padding=True, max_length=2048, truncation=True,
                       truncation_side="left")
    ids, _ = model.eval().generate(**inputs, decode_strategy="sampling", top_k=1, max_length=new_tokens,
                                   bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id, use_cache=True)
    return ids[0].tolist()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("build/llm-fp16"))
    parser.add_argument("--preset", default="tiny", help="names the weights folders under <build>/weights")
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    repository = args.build / "model_repository"
    requests = [(api.CAPTION, random_image(seed)) for seed in (0, 1)]
    requests += [(api.CHATGLM, flow.music_prompt_request(caption)) for caption in CAPTIONS]
    all_noise = True
    for i, (stage, request) in enumerate(requests):
        reference = decode(repository, stage, request, {}, args.new_tokens)  # fp32 on the CPU provider
        gpu = decode(repository, stage, request, FP16, args.new_tokens, RuntimeOptions(device="gpu"))
        tokens = compare_tokens(reference, gpu)
        difference = tokens["difference"]
        all_noise &= difference is None or difference["within_noise"]
        print(f"{stage}[{i}] fp16 CUDA vs fp32 CPU: {tokens['agree']} of {tokens['new_tokens']} tokens agree"
              + (f"; then {difference}" if difference else ""))
        eager = eager_fp16(args.build, args.preset, stage, request, args.new_tokens)
        if eager is not None:
            same = next((j for j, (a, b) in enumerate(zip(eager, gpu[0])) if a != b), min(len(eager), len(gpu[0])))
            print(f"{stage}[{i}] fp16 CUDA graph vs eager paddle fp16 on the GPU: {same} of {len(eager)} tokens agree")
    return 0 if all_noise else 1


if __name__ == "__main__":
    sys.exit(main())
