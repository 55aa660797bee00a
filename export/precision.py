"""Lower-precision variants of an exported ONNX graph, made with onnxruntime's own tools, and their error.

    python -m export audioldm ... --precision int8-static                          every component
    python -m export audioldm ... --precision unet=int8-static,vocoder=int8-dynamic

Each variant is written as `model.<precision>.onnx` next to the fp32 `model.onnx`, which is always exported and
parity-checked; the served `precision` parameter picks the file (musicgen.precision). The variants:

- int8-dynamic: `quantize_dynamic`, int8 weights, activations quantized at run time (uint8, per tensor).
- int8-static: `quantize_static`, QDQ, uint8 activations with ranges calibrated on recorded real inputs and
  int8 per-channel weights: onnxruntime fuses the QDQ pairs into QLinearConv/QLinearMatMul (u8s8 kernels: VNNI
  where the CPU has it, AVX2 otherwise).
- fp16: `onnxruntime.transformers.float16` with fp32 inputs and outputs kept, except an LLM step graph's KV
  cache (musicgen.precision.is_kv_cache), which goes in and out in fp16: half the cache's memory and bandwidth.
  The GPU option (it also loads and runs on the CPU provider, which is what the export's fidelity check uses).
bf16 is not offered: onnxruntime's x86 CPU provider has no bf16 kernels (benchmarks/README.md), and this
build machine's CPU has no AVX-512-BF16 for paddle's oneDNN bf16 (export/LLM.md).

AudioLDM judges its variants on the waveform (export/audioldm/precision.py); the LLM graphs on their own outputs
against fp32 (`write_graph_variants`) and on greedy tokens (tests/llm/test_llm_precision.py).

paddle2onnx stores weights as Constant nodes, which the quantizers take for activations; onnxruntime's own
`quant_pre_process` (shape inference plus its basic graph optimiser) turns them into initializers first.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from musicgen.precision import FP32, PRECISIONS, external_data_file, is_kv_cache, onnx_file
from musicgen.runtime import ONNX_FILE, RuntimeOptions, open_graph
from musicgen_client import interface as api

from .core import PARITY_FILE, Component, ExportError, compare, parity_cases

logger = logging.getLogger(__name__)

Feeds = Dict[str, np.ndarray]
VARIANTS = tuple(p for p in PRECISIONS if p != FP32)


class _FeedsReader:
    """onnxruntime's CalibrationDataReader protocol over recorded feeds."""

    def __init__(self, feeds: Sequence[Feeds]):
        self._feeds: Iterator[Feeds] = iter(feeds)

    def get_next(self) -> Optional[Feeds]:
        return next(self._feeds, None)

    def __iter__(self):
        return self


def write_variant(version_dir: Path, precision: str, calibration: Sequence[Feeds],
                  fp32_ops: Sequence[str] = ()) -> Path:
    """Write `model.<precision>.onnx` from the fp32 `model.onnx` in version_dir; `calibration` feeds the
    static quantizer's range estimation (the other variants ignore it); `fp32_ops`: op types an fp16 graph
    keeps in fp32 besides onnxruntime's default list."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, \
        quantize_dynamic, quantize_static

    version_dir = Path(version_dir)
    source, target = version_dir / ONNX_FILE, version_dir / onnx_file(precision)
    target.with_name(external_data_file(target.name)).unlink(missing_ok=True)  # a stale one: appended to, or left over
    # A graph past protobuf's 2 GB keeps its weights in `model.onnx.data` (export.external_data). Nothing may then
    # serialize the whole model in memory: the fp16 converter's shape inference and the quantizers would fail.
    external = has_external_data(version_dir)
    if precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        model = _load_with_inferred_shapes(source) if external else onnx.load(str(source))
        _omit_empty_resize_scales(model)
        cache = kv_cache_tensors(model, version_dir.parent.name)
        kept_fp32 = [t.name for t in [*model.graph.input, *model.graph.output] if t.name not in cache]
        model = convert_float_to_float16(model, keep_io_types=kept_fp32, disable_shape_infer=external,
                                         op_block_list=DEFAULT_OP_BLOCK_LIST + list(fp32_ops))
        _save(model, target)
        return target
    # The quantizers write their weights beside their files too (the variant is then `model.<precision>.onnx` +
    # `.data`, which the runtime's manifest check knows).
    with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True, save_as_external_data=external,
                          all_tensors_to_one_file=True, external_data_location=external_data_file(prepared.name))
        if precision == "int8-dynamic":
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=False,
                             use_external_data_format=external)
        elif precision == "int8-static":
            if not calibration:
                raise ExportError(f"{version_dir}: int8-static needs calibration inputs")
            quantize_static(
                prepared, target, _FeedsReader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                # MinMax keeps only each tensor's min and max per run: small at any model size. (Its
                # CalibMaxIntermediateOutputs option drops the collected data in onnxruntime 1.32: not used.)
                calibrate_method=CalibrationMethod.MinMax, use_external_data_format=external,
            )
        else:
            raise ValueError(f"no variant {precision!r}: choose from {', '.join(VARIANTS)}")
    return target


def _load_with_inferred_shapes(path: Path):
    """The graph with its value types inferred (what the fp16 converter needs), inferred from the files: onnx's
    in-memory inference serializes the model, which past 2 GB protobuf cannot."""
    import onnx

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        inferred = Path(tmp) / path.name
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred))
        model = onnx.load(str(inferred), load_external_data=False)
    onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))  # relative to the graph
    return model


def has_external_data(version_dir: Path) -> bool:
    """Whether the folder's fp32 graph keeps its weights outside the protobuf."""
    return (Path(version_dir) / external_data_file(ONNX_FILE)).exists()


# Kept in fp32 inside the LLMs' fp16 graphs: LLaMA's RMSNorm squares the hidden state and averages it (Pow,
# ReduceMean), and real LLaMA hidden values reach the thousands, past fp16's 65504 once squared (paddlenlp's
# fp16 LLaMA computes that variance in fp32 too).
LLM_FP32_OPS = ("Pow", "ReduceMean")
PROTOBUF_LIMIT = 2**31 - 1


def kv_cache_tensors(model, component: str) -> set:
    """The graph's KV cache inputs and outputs, by their interface names (musicgen.precision.is_kv_cache).
    paddle2onnx names the outputs `fetch_name_<i>`: they are read by position against the component's interface;
    a graph the interface does not know is read by its own names."""
    spec = api.COMPONENTS_BY_NAME.get(component)
    outputs = [t.name for t in model.graph.output]
    interface_names = {t.name: t.name for t in [*model.graph.input, *model.graph.output]}
    if spec is not None:
        interface_names.update(zip(outputs, [t.name for t in spec.outputs]))
    return {name for name, interface_name in interface_names.items() if is_kv_cache(interface_name)}


def _save(model, target: Path) -> None:
    """onnx.save, with the weights in `<file>.data` beside it past protobuf's 2 GB (the runtime's manifest check
    knows that name: musicgen.runtime.verify_graph)."""
    import onnx

    external = model.ByteSize() > PROTOBUF_LIMIT
    onnx.save(model, str(target), save_as_external_data=external, all_tensors_to_one_file=True,
              location=external_data_file(target.name))


def _omit_empty_resize_scales(model) -> None:
    """paddle2onnx gives Resize (the UNet's upsampling) sizes AND an empty constant as scales. The fp16 converter
    casts that constant, after which onnxruntime can no longer see it is empty and refuses the graph ("Either
    `sizes` or `scales` must be provided, but not both"); ONNX's own way to leave an optional input out is "".
    """
    from onnx import numpy_helper

    empty = {node.output[0] for node in model.graph.node if node.op_type == "Constant"
             and any(a.name == "value" and numpy_helper.to_array(a.t).size == 0 for a in node.attribute)}
    empty |= {init.name for init in model.graph.initializer if numpy_helper.to_array(init).size == 0}
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) == 4 and node.input[3] and node.input[2] in empty:
            node.input[2] = ""


def write_graph_variants(components: Dict[str, Component], weights: Path, repository: Path,
                         precisions: Dict[str, str], stage: Optional[str] = None) -> None:
    """Write every requested variant ({graph: precision}) of an exported family whose graphs are judged on their
    own outputs (the LLMs): each against the fp32 graph on the inputs export checked fp32 on, into its
    parity.json. With `stage` (its assets written), also the greedy tokens of one stage request over the chosen
    variants against fp32 (export.token_agreement), into each variant's report."""
    for name, precision in precisions.items():
        version_dir = Path(repository) / name / "1"
        if precision == "int8-static":
            raise ExportError(f"{name}: int8-static needs calibration inputs the LLM export does not record; "
                              "choose fp16 or int8-dynamic")
        started = time.perf_counter()
        path = write_variant(version_dir, precision, calibration=(), fp32_ops=LLM_FP32_OPS)
        logger.info("%s: %s written in %.0f s (%.1f MB)", name, path.name, time.perf_counter() - started,
                    path.stat().st_size / 2**20)
        outputs = [t.name for t in components[name].spec.outputs]
        rows = compare_with_fp32(version_dir, precision, parity_cases(components[name], weights), outputs)
        add_variant_report(version_dir, precision, {"file": path.name, "component": rows})
        logger.info("%s %s against fp32: %s", name, precision,
                    ", ".join(f"{r['case']}/{r['output']} rel {r['max_rel']:.3g}" for r in rows))
    if stage and precisions:
        from .token_agreement import compare_tokens, decode, stage_request

        request = stage_request(stage)
        tokens = compare_tokens(decode(repository, stage, request, {}), decode(repository, stage, request, precisions))
        logger.info("%s greedy tokens with %s: %d of %d as fp32%s", stage, precisions, tokens["agree"],
                    tokens["new_tokens"], f", then {tokens['difference']}" if tokens["difference"] else "")
        for name, precision in precisions.items():
            report = json.loads((Path(repository) / name / "1" / PARITY_FILE).read_text())["precision_variants"]
            add_variant_report(Path(repository) / name / "1", precision,
                               report[precision] | {"greedy_tokens": {"stage": stage, "precisions": precisions, **tokens}})


def add_variant_report(version_dir: Path, precision: str, report: dict) -> None:
    """`report` under the graph's parity.json "precision_variants"."""
    path = Path(version_dir) / PARITY_FILE
    parity = json.loads(path.read_text())
    parity.setdefault("precision_variants", {})[precision] = report
    path.write_text(json.dumps(parity, indent=2))


def compare_with_fp32(version_dir: Path, precision: str, cases: Dict[str, Feeds],
                      output_names: Sequence[str]) -> List[dict]:
    """Max abs / relative error of the variant against the fp32 graph, per input case and output."""
    reference = open_graph(version_dir, RuntimeOptions(precision=FP32))
    variant = open_graph(version_dir, RuntimeOptions(precision=precision))
    rows = []
    for case, feeds in cases.items():
        for name, ref, out in zip(output_names, reference.run(feeds), variant.run(feeds)):
            max_abs, max_rel = compare(ref, out)
            rows.append({"case": case, "output": name, "max_abs": max_abs, "max_rel": max_rel})
    return rows
