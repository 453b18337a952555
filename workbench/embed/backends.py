"""Inference backends of the embedding model: PyTorch (sentence-transformers) or an ONNX Runtime export.

An export is made once, offline, from the packaged weights (``torch.onnx.export`` of the BERT encoder with
eager attention, then ONNX Runtime's BERT fusions, :data:`GRAPH`; ``onnx-int8`` adds ONNX Runtime's dynamic
quantization of the weights to 8 bits, Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018, with the settings of :class:`Int8Settings`), then
optimised by ONNX Runtime at ``opt_level`` (1 basic, 2 extended, 3 all graph
fusions) and kept in the workbench cache under ``exports/<weights hash>-<variant>`` (:func:`variant`: backend,
quantization settings, graph, level), so an export made with other settings is never reused. It is written in a
temporary folder and renamed into place, with a manifest of each file's sha256; a folder whose files fail the
manifest is a corrupt export, deleted and made again. The pooling (mean over tokens, then L2 normalisation)
is the packaged model's own ``1_Pooling`` and ``2_Normalize`` (sentence-transformers), applied in NumPy.

sentence-transformers' ``backend="onnx"`` needs ``optimum-onnx``, whose only release (0.1.0) requires
transformers < 4.58 and fails to import under the transformers 5 that sentence-transformers 6 needs; the
export is therefore done here with torch and onnxruntime alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.embed.model import ModelIdentity, load_model
from workbench.errors import ModelUnavailableError

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
DEFAULT_OPT_LEVEL = 3
MANIFEST = "manifest.json"
_MODEL_FILE = "model.onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_QUANTIZABLE = ("MatMul",)    # the weight-carrying op left after the BERT fusions (the embeddings are fused)
#: how the graph is made, part of every export's variant. transformers 5 runs BERT's attention through
#: ``scaled_dot_product_attention``, which the TorchScript exporter decomposes (IsNaN/Where guards, mask
#: broadcasting: 338 nodes after ONNX Runtime's level 3, no fused attention), no faster than PyTorch. Exported
#: with eager attention, ``onnxruntime.transformers.optimizer`` (model_type "bert") fuses it to 46 nodes: one
#: EmbedLayerNormalization, 6 Attention, 12 SkipLayerNormalization, 6 BiasGelu.
GRAPH = "eager-bertfused"


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; ModelUnavailableError names it and the choices."""
    if backend not in BACKENDS:
        raise ModelUnavailableError(f"unknown embedding backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ModelUnavailableError("embedding backend openvino needs the openvino package, which is not "
                                        "installed (pip install openvino)") from None
        raise ModelUnavailableError("embedding backend openvino is not implemented yet; use onnx or onnx-int8")
    return backend


@dataclass(frozen=True)
class Int8Settings:
    """ONNX Runtime dynamic quantization (``onnxruntime.quantization.quantize_dynamic``) of the ``onnx-int8``
    export: weights quantized once at export, activations to uint8 with a range taken per tensor at run time.

    Quantized after the BERT fusions (:data:`GRAPH`), so the fused Attention's query/key/value projection stays
    float: 100 Cranfield abstracts give mean/min cosine 0.9958/0.9935 to PyTorch against 0.9948/0.9921 when the
    unfused graph is quantized, at the same speed. The other defaults are optimum's
    ``AutoQuantizationConfig.avx2(is_static=False)``, the configuration behind
    sentence-transformers' ``export_dynamic_quantized_onnx_model(model, "avx2", ...)``: one scale per output
    column of each weight matrix (``per_channel``), symmetric weights (the default :data:`INT8` takes int8
    ones where the CPU has VNNI, as optimum's ``avx512_vnni`` configuration: :func:`cpu_weight_type`), the full
    8-bit range, MatMul only (after the fusions the embeddings live inside ``EmbedLayerNormalization``). One scale per whole matrix (``per_channel=False``) lowers the
    mean cosine to PyTorch on 300 Cranfield abstracts from 0.995 to 0.977: a matrix's widest column sets the
    step of all the others. The activation range is the batch's, so a text's int8 vector depends slightly on
    the texts it is batched with.
    """

    per_channel: bool = True
    weight_type: str = "uint8"                      # or "int8" (see :func:`cpu_weight_type`)
    symmetric: bool = True
    reduce_range: bool = False                      # 7-bit weights: only for VPMADDUBSW saturation (no VNNI)
    ops: tuple[str, ...] = ("MatMul",)

    def __post_init__(self) -> None:
        if self.weight_type not in ("uint8", "int8"):
            raise ModelUnavailableError(f"int8 weight type {self.weight_type!r} must be uint8 or int8")
        bad = [op for op in self.ops if op not in _QUANTIZABLE]
        if bad or not self.ops:
            raise ModelUnavailableError(f"cannot quantize operator(s) {', '.join(bad) or 'none given'}; "
                                        f"expected some of {', '.join(_QUANTIZABLE)}")

    @property
    def tag(self) -> str:
        """A short name of the settings, part of the export folder and of the embedding cache key."""
        return "-".join([*(op.lower() for op in self.ops), ("u8" if self.weight_type == "uint8" else "s8")
                         + ("sym" if self.symmetric else "asym"), "perchannel" if self.per_channel else "pertensor",
                         *(["7bit"] if self.reduce_range else [])])

    def quantize_kwargs(self) -> dict[str, Any]:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType

        return {"per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "weight_type": QuantType.QUInt8 if self.weight_type == "uint8" else QuantType.QInt8,
                "op_types_to_quantize": list(self.ops),
                # the fused contrib ops have no ONNX type inference: their outputs are float
                "extra_options": {"WeightSymmetric": self.symmetric, "DefaultTensorType": TensorProto.FLOAT}}


def cpu_weight_type(cpuinfo: str | None = None) -> str:
    """``"int8"`` where the CPU has VNNI (``avx512_vnni`` or ``avx_vnni`` in ``/proc/cpuinfo``), else ``"uint8"``.

    ONNX Runtime multiplies uint8 activations by int8 weights with VNNI's VPDPBUSD in one instruction; without
    VNNI that u8·s8 product goes through VPMADDUBSW, whose 16-bit sums can saturate, and uint8 weights are the
    safe choice (optimum's ``avx512_vnni`` and ``avx2`` configurations make the same split). On this machine
    class (AMD EPYC, AVX-512 VNNI) int8 weights encoded 300 Cranfield abstracts 1.22x faster than uint8 at the
    same mean cosine to PyTorch (0.9958). The tag of the settings names the type, so the two never share a
    cache entry."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(cpuinfo.split())
    return "int8" if flags & {"avx512_vnni", "avx_vnni"} else "uint8"


INT8 = Int8Settings(weight_type=cpu_weight_type())


def variant(backend: str, opt_level: int = DEFAULT_OPT_LEVEL, int8: Int8Settings = INT8) -> str:
    """What an export's vectors depend on besides the weights: backend, quantization settings (``onnx-int8``),
    :data:`GRAPH`, optimisation level; e.g. ``onnx-int8-matmul-u8sym-perchannel-eager-bertfused-O3``."""
    settings = f"-{int8.tag}" if backend == "onnx-int8" else ""
    return f"{backend}{settings}-{GRAPH}-O{opt_level}"


def export_key(identity: ModelIdentity, backend: str, opt_level: int = DEFAULT_OPT_LEVEL,
               int8: Int8Settings = INT8) -> str:
    """The cache folder name of an export: weights hash and :func:`variant`."""
    return f"{identity.weights_sha256[:16]}-{variant(backend, opt_level, int8)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def export_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete export (missing manifest, file or checksum), or None when it is."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        entries = [(str(name), str(digest)) for name, digest in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "has no readable manifest"
    if not any(name == _MODEL_FILE for name, _ in entries):
        return f"lacks {_MODEL_FILE} in its manifest"
    for name, digest in entries:
        f = folder / name
        if not f.is_file():
            return f"lacks {name}"
        if _sha256(f) != digest:
            return f"{name} fails its checksum"
    return None


def _export(model_dir: Path, target: Path, backend: str, opt_level: int, int8: Int8Settings) -> None:
    """Write the ONNX graph of the packaged model's encoder into ``target`` (an empty folder)."""
    import onnxruntime as ort
    import torch

    from onnxruntime.transformers.optimizer import optimize_model

    st = load_model(model_dir)
    bert = st[0].auto_model.eval()

    class Encoder(torch.nn.Module):
        """The token states alone, from keyword inputs (BERT's positional order changed in transformers 5)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert                        # a submodule, so its weights export as initialisers

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    sample = st.preprocess(["a sample sentence", "another, somewhat longer, sample sentence"])
    args = tuple(sample[n] for n in _INPUTS)
    encoder = Encoder()
    raw = target / "raw.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in (*_INPUTS, "last_hidden_state")}
    shared = bert.config._attn_implementation      # the model is the process's cached one: put it back after
    bert.set_attn_implementation("eager")           # the pattern the BERT fusions match (see GRAPH)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")         # tracer notes on shapes, which are declared dynamic above
            torch.onnx.export(encoder, args, str(raw), input_names=list(_INPUTS),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    finally:
        bert.set_attn_implementation(shared)
    config = bert.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=0)   # the fusions alone; the level below
    raw.unlink()
    raw = target / "fused.onnx"
    fused.save_model_to_file(str(raw))
    quantization = None
    if backend == "onnx-int8":
        from onnxruntime.quantization import quantize_dynamic

        quantized = target / "int8.onnx"
        quantize_dynamic(str(raw), str(quantized), **int8.quantize_kwargs())
        raw.unlink()
        quantization = asdict(int8)
        raw = quantized
    options = ort.SessionOptions()
    options.log_severity_level = 3                  # not the warning that level 3 graphs are machine-specific
    options.graph_optimization_level = _levels(ort)[opt_level]
    options.optimized_model_filepath = str(target / _MODEL_FILE)
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])   # writes the optimised graph
    raw.unlink()
    files = {p.name: _sha256(p) for p in sorted(target.iterdir())}
    meta = {"backend": backend, "graph": GRAPH, "opt_level": opt_level, "quantization": quantization, "files": files,
            "max_seq_length": int(st.max_seq_length), "torch": torch.__version__, "onnxruntime": ort.__version__}
    (target / MANIFEST).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _levels(ort: Any) -> dict[int, Any]:
    return {0: ort.GraphOptimizationLevel.ORT_DISABLE_ALL, 1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, 3: ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def ensure_export(model_dir: Path, root: Path, identity: ModelIdentity, backend: str,
                  opt_level: int = DEFAULT_OPT_LEVEL, int8: Int8Settings = INT8) -> tuple[Path, bool]:
    """The folder of the ``backend`` export under ``root/exports`` and whether it was made now (False: reused).

    A corrupt or partial export is removed and made again; a new one is renamed into place whole."""
    if backend not in ("onnx", "onnx-int8"):
        raise ModelUnavailableError(f"embedding backend {backend!r} has no ONNX export")
    if opt_level not in (0, 1, 2, 3):
        raise ModelUnavailableError(f"ONNX optimisation level {opt_level!r} must be 0, 1, 2 or 3")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelUnavailableError(f"embedding backend {backend} needs onnxruntime and onnx "
                                    "(pip install onnxruntime onnx)") from None
    folder = Path(root) / "exports" / export_key(identity, backend, opt_level, int8)
    if folder.is_dir():
        if export_problem(folder) is None:
            return folder, False
        shutil.rmtree(folder)                       # corrupt: made again below
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        _export(model_dir, tmp, backend, opt_level, int8)
        tmp.rename(folder)
    except OSError:
        if not folder.is_dir():                     # lost a race with another process: theirs is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, True


class OnnxEncoder:
    """``encode`` like ``SentenceTransformer.encode`` (length-sorted batches, mean pooling, optional L2
    normalisation) over an ONNX Runtime session of an export."""

    def __init__(self, model_dir: Path, export_dir: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        meta = json.loads((export_dir / MANIFEST).read_text())
        self.max_seq_length = meta["max_seq_length"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # the graph is optimised
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(export_dir / _MODEL_FILE), options,
                                            providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """float32 ``(n, dim)`` vectors of ``texts`` in input order."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation="longest_first",
                                 max_length=self.max_seq_length, return_tensors="np")
            feed = {n: enc[n].astype(np.int64) for n in self._inputs}
            hidden = self.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            if normalize:
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for i, v in zip(rows, pooled):
                out[i] = v
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
