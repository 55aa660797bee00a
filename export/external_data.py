"""ONNX graphs past protobuf's 2 GB: the weights go beside the graph as ONNX external data, streamed from the
Paddle parameters file one tensor at a time.

Why not paddle2onnx's own `external_file`: paddle2onnx 2.1.0 builds the whole ONNX model, weights included, as
one protobuf in memory, and its external-data pass (`ModelExporter::SaveExternalData`) only moves the `value`
of Constant nodes; past 2 GB serialization fails and its Python `export` writes the empty string it gets back
(a 0-byte model.onnx, no data file), after holding the weights several times over. So the large path converts
the program WITHOUT its parameters file (paddle2onnx then leaves every parameter as a named, undefined input of
the nodes that use it) and this module adds each parameter as an initializer whose bytes are copied, a chunk at a
time, from `model.pdiparams` into `model.onnx.data`. The graph is the converted graph; the weights are the
saved ones; parity (export.core) checks the result against eager like any other graph.

`model.pdiparams` is Paddle's combined format: for each parameter, in the order of the sorted parameter names,
a LoD header (uint32 version, uint64 levels, each level's offsets), then the tensor (uint32 version, int32
length of a `VarType.TensorDesc` protobuf, that protobuf: data type and dims, then the raw little-endian data).
"""
from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Tuple

from musicgen.precision import external_data_file

logger = logging.getLogger(__name__)

_CHUNK = 64 << 20  # bytes copied at a time: the largest buffer the attach step holds
_ALIGN = 4096  # data offsets on page boundaries, so onnxruntime can map them instead of copying

# Paddle's VarType.Type → (ONNX TensorProto data type, bytes per element)
_PADDLE_TO_ONNX = {0: (9, 1), 1: (5, 2), 2: (6, 4), 3: (7, 8), 4: (10, 2), 5: (1, 4), 6: (11, 8), 20: (2, 1),
                   21: (3, 1), 22: (16, 2)}


@dataclass(frozen=True)
class StoredTensor:
    """Where one parameter's raw data lies in a combined Paddle parameters file."""

    dtype: int  # ONNX TensorProto data type
    dims: Tuple[int, ...]
    offset: int
    nbytes: int


def _varint(buffer: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _tensor_desc(buffer: bytes) -> Tuple[int, Tuple[int, ...]]:
    """(paddle data type, dims) from a serialized VarType.TensorDesc (field 1: data_type, field 2: dims)."""
    dtype, dims, pos = None, [], 0
    while pos < len(buffer):
        key, pos = _varint(buffer, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buffer, pos)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:  # packed dims
            length, pos = _varint(buffer, pos)
            end = pos + length
            while pos < end:
                value, pos = _varint(buffer, pos)
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in a Paddle TensorDesc")
    if dtype is None:
        raise ValueError("a Paddle TensorDesc without a data type")
    return dtype, tuple(dims)


def _read(stream: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError(f"{stream.name} ends inside a tensor header: not a complete Paddle parameters file")
    return struct.unpack(fmt, data)


def stored_tensors(params_file: Path) -> Iterator[StoredTensor]:
    """Each tensor of a combined Paddle parameters file, in file order, without reading its data."""
    size = Path(params_file).stat().st_size
    with open(params_file, "rb") as stream:
        while stream.tell() < size:
            _version, levels = _read(stream, "<IQ")
            for _ in range(levels):
                (level_bytes,) = _read(stream, "<Q")
                stream.seek(level_bytes, 1)
            _version, desc_size = _read(stream, "<Ii")
            paddle_dtype, dims = _tensor_desc(stream.read(desc_size))
            if paddle_dtype not in _PADDLE_TO_ONNX:
                raise ValueError(f"{params_file}: Paddle data type {paddle_dtype} has no ONNX equivalent here")
            onnx_dtype, itemsize = _PADDLE_TO_ONNX[paddle_dtype]
            nbytes = itemsize
            for dim in dims:
                nbytes *= dim
            offset = stream.tell()
            if offset + nbytes > size:
                raise ValueError(f"{params_file} is truncated: a tensor of {nbytes} bytes at {offset}, file {size}")
            stream.seek(nbytes, 1)
            yield StoredTensor(onnx_dtype, dims, offset, nbytes)


def program_parameters(program_file: Path) -> Dict[str, Tuple[int, ...]]:
    """The parameters (`builtin.parameter` ops, "p" in PIR's JSON) a Paddle PIR program declares, with their dims,
    in the order `paddle.jit.save` stores them: sorted by name."""
    program = json.loads(Path(program_file).read_text())["program"]
    declared = {}
    for region in program["regions"]:
        for block in region["blocks"]:
            for op in block["ops"]:
                if op["#"] == "p":
                    declared[op["A"][3]] = tuple(op["O"]["TT"]["D"][1])
    return {name: declared[name] for name in sorted(declared)}


def stored_parameters(program_file: Path, params_file: Path) -> List[Tuple[str, StoredTensor]]:
    """Each parameter of a saved Paddle program paired with where its data lies in the parameters file, checked:
    as many tensors as parameters, each of its declared dims."""
    declared = program_parameters(program_file)
    stored = list(stored_tensors(params_file))
    if len(stored) != len(declared):
        raise ValueError(f"{params_file} holds {len(stored)} tensors, {program_file} declares {len(declared)} "
                         "parameters")
    for (name, dims), tensor in zip(declared.items(), stored):
        if tuple(dims) != tensor.dims:
            raise ValueError(f"{params_file}: parameter {name} is stored as {tensor.dims}, declared {dims}: the "
                             "file does not follow the program's sorted parameter order")
    return list(zip(declared, stored))


def _copy(source: BinaryIO, target: BinaryIO, offset: int, nbytes: int) -> None:
    source.seek(offset)
    left = nbytes
    while left:
        chunk = source.read(min(_CHUNK, left))
        if not chunk:
            raise ValueError(f"{source.name} ended {left} bytes early")
        target.write(chunk)
        left -= len(chunk)


def attach_external_weights(onnx_file: Path, program_file: Path, params_file: Path) -> Path:
    """Add the parameters of the Paddle program (`program_file`, `params_file`) to `onnx_file`, its weight-free
    conversion, as initializers whose data lives in `<onnx_file>.data`; returns the data file.

    Each parameter must be a tensor the graph uses and does not define (what paddle2onnx leaves of a parameter
    converted without the parameters file); one the graph does not use is left out."""
    import onnx
    from onnx import TensorProto

    onnx_file = Path(onnx_file)
    parameters = stored_parameters(program_file, params_file)
    names = [name for name, _ in parameters]
    model = onnx.load(str(onnx_file), load_external_data=False)
    graph = model.graph
    defined = {i.name for i in graph.initializer} | {o for node in graph.node for o in node.output}
    used = _used_names(graph)
    clash = sorted(set(names) & defined)
    if clash:
        raise ValueError(f"{onnx_file} already defines parameters {clash[:5]}: not a weight-free conversion")
    unused = [n for n in names if n not in used]
    if unused:
        logger.info("%d parameters are not used by the graph (left out): %s", len(unused), unused[:5])
    data_file = onnx_file.with_name(external_data_file(onnx_file.name))
    with open(params_file, "rb") as source, open(data_file, "wb") as target:
        for name, tensor in parameters:
            if name not in used:
                continue
            target.seek(-target.tell() % _ALIGN, 1)
            initializer = TensorProto(name=name, data_type=tensor.dtype, dims=list(tensor.dims),
                                      data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_file.name), ("offset", str(target.tell())),
                               ("length", str(tensor.nbytes))):
                entry = initializer.external_data.add()
                entry.key, entry.value = key, value
            _copy(source, target, tensor.offset, tensor.nbytes)
            graph.initializer.append(initializer)
    top_level_reads = {name for node in graph.node for name in node.input}
    missing = sorted(top_level_reads - {i.name for i in graph.initializer} - {i.name for i in graph.input}
                     - {o for node in graph.node for o in node.output} - {""})
    if missing:
        raise ValueError(f"{onnx_file}: tensors used but never defined after attaching the weights: {missing[:5]}")
    onnx.save(model, str(onnx_file))
    logger.info("attached %d weights (%.2f GB) to %s as external data %s", len(names) - len(unused),
                data_file.stat().st_size / 1e9, onnx_file.name, data_file.name)
    return data_file


def _used_names(graph) -> set:
    """Every tensor name a node of `graph` (or of its subgraphs) reads."""
    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                used |= _used_names(sub)
    return used
