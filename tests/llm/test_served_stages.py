"""The caption and chatglm models through a real tritonserver: both ways of reaching their graphs give the tokens
of the in-process recipe, concurrent requests share decode steps and each gets the answer it gets alone, a request
past the cache's context is a 400, and a cancelled request stops in the loop.
"""
import json
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from metrics import metric_value  # tests/metrics.py
from musicgen.llm.recipes import CaptionRecipe, ChatGLMRecipe, TextGenConfig
from musicgen.manifest import write_manifest
from musicgen.stage_graphs import InProcessGraphs
from musicgen.runtime import RuntimeOptions
from musicgen_client import flow
from musicgen_client import interface as api
from test_token_parity import LLM_GRAPHS, png

pytestmark = pytest.mark.e2e

PROMPT = flow.music_prompt_request("The image shows a cat on a marble table")


def stage_copy(repository, out, graphs):
    """The repository with its stages' `graphs` set and their stop tokens removed, so that a long request cannot
    end early (graph folders linked, not copied)."""
    for folder in repository.iterdir():
        if folder.name in (api.CAPTION, api.CHATGLM):
            shutil.copytree(folder, out / folder.name)
            config = out / folder.name / "config.pbtxt"
            config.write_text(config.read_text().replace('string_value: "in_process"', f'string_value: "{graphs}"'))
            textgen = out / folder.name / "1" / "textgen.json"
            values = json.loads(textgen.read_text())
            values["generation"]["stop_token_ids"] = []
            textgen.write_text(json.dumps(values))
            write_manifest(out / folder.name / "1")  # as export would: the stage checks its files at load
        elif (folder / "config.pbtxt").exists():
            (out / folder.name).symlink_to(folder.resolve())
    return out


@pytest.fixture(scope="module")
def repositories(llm_build, tmp_path_factory):
    return {g: stage_copy(llm_build.repository, tmp_path_factory.mktemp(g), g) for g in ("in_process", "served")}


@pytest.fixture(scope="module")
def servers(repositories, triton_server_factory):
    return {graphs: triton_server_factory(repo) for graphs, repo in repositories.items()}


def infer(server, model, arrays, protocol="http", **kwargs):
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    inputs = []
    for name, array in arrays.items():
        tensor = lib.InferInput(name, list(array.shape), "BYTES" if array.dtype == object else "INT32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        return client.infer(model, inputs, **kwargs)
    finally:
        client.close()


def text_of(result, name):
    return result.as_numpy(name).reshape(-1)[0].decode("utf-8")


def prompt_inputs(max_new_tokens=None, prompt=PROMPT):
    arrays = {api.PROMPT: np.array([prompt.encode()], dtype=object)}
    if max_new_tokens is not None:
        arrays[api.MAX_NEW_TOKENS] = np.array([max_new_tokens], dtype=np.int32)
    return arrays


@pytest.mark.parametrize("graphs", ["in_process", "served"])
def test_both_ways_to_the_graphs_give_the_recipe_s_answers(repositories, servers, graphs):
    repo = repositories["in_process"]
    local = InProcessGraphs(repo, LLM_GRAPHS, RuntimeOptions())
    caption = CaptionRecipe(repo / api.CAPTION / "1", local, local.step(api.MINIGPT4_LLM_STEP))(png(5, (30, 90)))
    answer = ChatGLMRecipe(repo / api.CHATGLM / "1", local, local.step(api.CHATGLM_LLM_STEP))(
        PROMPT, TextGenConfig.load(repo / api.CHATGLM / "1").generation_for(24))
    served_caption = infer(servers[graphs], api.CAPTION, {api.IMAGE: np.array([png(5, (30, 90))], dtype=object)})
    assert text_of(served_caption, api.CAPTION) == caption.caption
    assert text_of(infer(servers[graphs], api.CHATGLM, prompt_inputs(24)), api.TEXT) == answer.text


def shared_rows(server, model, step_graph):
    """(decode steps, rows summed over them) the model's engine reported for its step graph."""
    labels = {"model": model, "stage": step_graph}
    return (metric_value(server, "musicgen_batch_size_count", **labels),
            metric_value(server, "musicgen_batch_size_sum", **labels))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_requests_share_decode_steps_and_each_gets_its_answer_alone(servers, protocol):
    """Four chatglm and three caption requests at once (other prompts, images and budgets): the stages' engines
    decode them together (more than one row per step, on the metrics port), and each response equals the one the
    same request gets alone."""
    server = servers["in_process"]
    requests = [(api.CHATGLM, api.TEXT, prompt_inputs(n, flow.music_prompt_request(caption)))
                for n, caption in zip((24, 9, 30, 17), ("a cat", "two dogs at night", "rain", "an empty stadium"))]
    requests += [(api.CAPTION, api.CAPTION, {api.IMAGE: np.array([png(seed)], dtype=object),
                                             api.MAX_NEW_TOKENS: np.array([n], dtype=np.int32)})
                 # Budgets long enough that a caption still decodes while `execute` prepares the next one
                 # (image decoding and encoding, one request after another): short ones could finish first.
                 for seed, n in ((1, 200), (2, 150), (3, 250))]

    def answer(request):
        model, output, arrays = request
        return text_of(infer(server, model, arrays, protocol), output)

    alone = [answer(request) for request in requests]
    before = {m: shared_rows(server, m, g) for m, g in ((api.CHATGLM, api.CHATGLM_LLM_STEP),
                                                       (api.CAPTION, api.MINIGPT4_LLM_STEP))}
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(answer, requests))
    assert together == alone
    assert len(set(alone[:4])) == 4 and len(set(alone[4:])) == 3
    for model, step_graph in ((api.CHATGLM, api.CHATGLM_LLM_STEP), (api.CAPTION, api.MINIGPT4_LLM_STEP)):
        steps, rows = (now - then for now, then in zip(shared_rows(server, model, step_graph), before[model]))
        assert rows > steps > 0, f"{model}: {rows} rows in {steps} decode steps: no step was shared"


def test_a_budget_past_the_cache_is_a_400_naming_the_field(servers):
    with pytest.raises(InferenceServerException, match="max_new_tokens: 4096 is out of range: allowed 1 to") as info:
        infer(servers["in_process"], api.CHATGLM, prompt_inputs(4096))
    assert info.value.status() == "400"


def test_a_cancelled_request_stops_inside_the_token_loop(servers):
    """A gRPC deadline far shorter than 4000 tokens: the model stops decoding at the next token instead of running to
    the end. The client is gone by then, so the server's log is the witness (musicgen.generation logs it)."""
    server = servers["in_process"]
    with pytest.raises(InferenceServerException, match="(?i)deadline"):
        infer(server, api.CHATGLM, prompt_inputs(4000), protocol="grpc", client_timeout=0.3)
    deadline = time.monotonic() + 60
    while not (found := re.findall(r"cancelled after (\d+) of at most 4000 new tokens", server.log_path.read_text())):
        assert time.monotonic() < deadline, "the model never reported the cancellation"
        time.sleep(0.05)
    assert len(found) == 1 and int(found[0]) < 4000


def test_generated_tokens_and_seconds_appear_on_the_metrics_port(servers):
    """Stop tokens are removed in these copies: a request for 24 tokens makes exactly 24."""
    server = servers["in_process"]
    tokens, requests = (metric_value(server, "musicgen_generated_tokens_total", model=api.CHATGLM),
                        metric_value(server, "musicgen_generation_seconds_count", model=api.CHATGLM))
    infer(server, api.CHATGLM, prompt_inputs(24))
    assert metric_value(server, "musicgen_generated_tokens_total", model=api.CHATGLM) == tokens + 24
    assert metric_value(server, "musicgen_generation_seconds_count", model=api.CHATGLM) == requests + 1
    assert metric_value(server, "musicgen_generation_seconds_sum", model=api.CHATGLM) > 0
