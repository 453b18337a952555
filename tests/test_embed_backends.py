"""Embedding backends: one export reused, a corrupt or partial export redone, the quantization settings in the
export and cache keys, cache keys never mixing two backends, int8 fidelity against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.embed.backends import INT8, Int8Settings, export_key, export_problem, variant
from workbench.embed.encoder import Embedder
from workbench.embed.model import model_identity
from workbench.errors import ModelUnavailableError

TEXTS = ["a blunt body in hypersonic flow", "boundary layer transition on a flat plate", "x"]
# Cranfield-like sentences, longer than TEXTS: fidelity is measured where quantization errors accumulate
PROSE = [
    "experimental investigation of the aerodynamics of a wing in a slipstream, with the propeller running",
    "the boundary layer on a flat plate at high mach number is computed by an integral method and compared "
    "with measurements of skin friction and heat transfer",
    "simple shear flow past a flat plate in an incompressible fluid of small viscosity",
    "the buckling of thin cylindrical shells under axial compression and external pressure",
    "an approximate solution for the laminar heat transfer at the stagnation point of a blunt body",
    "jet noise and its reduction by mixing nozzles, measured at model scale in an anechoic chamber",
    "flutter of a panel in supersonic flow: theory and wind tunnel tests of clamped plates",
    "the effect of sweepback on the low speed stalling characteristics of a thin wing",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("wbcache")
    emb = Embedder(cache_dir=root, backend="onnx-int8", show_progress=False)
    emb.encode(TEXTS)
    assert emb.export_made is True
    return root


def test_backend_cache_keys_never_mix(cache):
    int8 = Embedder(cache_dir=cache, backend="onnx-int8", show_progress=False)
    torch = Embedder(cache_dir=cache, backend="torch", show_progress=False)
    assert int8.cache.root != torch.cache.root and int8.cache.key(TEXTS[0]) != torch.cache.key(TEXTS[0])
    v8 = int8.encode(TEXTS)
    assert int8.last_stats["cache_hits"] == len(TEXTS)
    vt = torch.encode(TEXTS)
    assert torch.last_stats["encoded"] == len(TEXTS)            # nothing taken from the int8 namespace
    assert not np.array_equal(v8, vt) and np.einsum("nd,nd->n", v8, vt).min() > 0.9


def test_export_is_reused(cache):
    emb = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False)
    emb.encode(TEXTS[:1])
    assert emb.export_made is False


def test_corrupt_export_is_redone(cache):
    folder = next((cache / "exports").glob(f"*-{variant('onnx-int8')}"))
    model = folder / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    assert "checksum" in export_problem(folder)
    emb = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False)
    v = emb.encode(TEXTS)
    assert emb.export_made is True and export_problem(folder) is None
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]   # no temporary folder left
    ref = Embedder(cache_dir=cache, backend="onnx-int8", show_progress=False).encode(TEXTS)  # cached before
    np.testing.assert_allclose(v, ref, atol=1e-5)


def test_unknown_and_missing_backends_are_clear():
    with pytest.raises(ModelUnavailableError, match="unknown embedding backend 'tensorrt'"):
        Embedder(backend="tensorrt")
    with pytest.raises(ModelUnavailableError, match="openvino"):
        Embedder(backend="openvino")


def test_torch_first_then_int8_never_reads_torch_vectors(tmp_path, cache):
    root = tmp_path / "c"
    vt = Embedder(cache_dir=root, backend="torch", show_progress=False).encode(TEXTS)
    (root / "exports").symlink_to(cache / "exports")            # the export made by the fixture, not redone
    int8 = Embedder(cache_dir=root, backend="onnx-int8", show_progress=False)
    v8 = int8.encode(TEXTS)
    assert int8.last_stats["encoded"] == len(TEXTS) and int8.export_made is False
    assert not np.array_equal(v8, vt)


def test_quantization_settings_are_in_the_keys(tmp_path):
    identity = model_identity()
    per_tensor = Int8Settings(per_channel=False)
    assert variant("onnx-int8", int8=Int8Settings()) == "onnx-int8-matmul-u8sym-perchannel-eager-bertfused-O3"
    assert variant("onnx-int8") == variant("onnx-int8", int8=INT8)                # the CPU's default
    assert variant("onnx-int8", int8=per_tensor) == "onnx-int8-matmul-u8sym-pertensor-eager-bertfused-O3"
    keys = {export_key(identity, "onnx-int8", 3, s) for s in
            (Int8Settings(), per_tensor, Int8Settings(weight_type="int8"), Int8Settings(symmetric=False),
             Int8Settings(reduce_range=True))}
    old = ("-onnx-int8-O3", "-onnx-int8-matmul-u8sym-perchannel-O3")     # the unfused sdpa exports' names
    assert len(keys) == 5 and not any(k.endswith(old) for k in keys)
    assert export_key(identity, "onnx", 3) == f"{identity.weights_sha256[:16]}-onnx-eager-bertfused-O3"
    a = Embedder(cache_dir=tmp_path, backend="onnx-int8", show_progress=False)
    b = Embedder(cache_dir=tmp_path, backend="onnx-int8", int8=per_tensor, show_progress=False)
    assert a.cache.root != b.cache.root and a.cache.key("x") != b.cache.key("x")


def test_int8_weight_type_follows_the_cpu():
    from workbench.embed.backends import cpu_weight_type

    assert cpu_weight_type("flags : fpu sse avx2 avx512f avx512_vnni") == "int8"
    assert cpu_weight_type("flags : fpu sse avx2 avx_vnni") == "int8"
    assert cpu_weight_type("flags : fpu sse avx2 avx512f") == "uint8"
    assert cpu_weight_type("") == "uint8"
    assert INT8.weight_type == cpu_weight_type()


def test_bad_quantization_settings_are_clear():
    with pytest.raises(ModelUnavailableError, match="int8 weight type 'int4' must be uint8 or int8"):
        Int8Settings(weight_type="int4")
    with pytest.raises(ModelUnavailableError, match="cannot quantize operator.s. Conv"):
        Int8Settings(ops=("MatMul", "Conv"))


def test_partial_exports_are_detected(cache, tmp_path):
    """Each damage is what ``ensure_export`` redoes (as the corrupt case above shows end to end)."""
    import shutil

    source = next((cache / "exports").glob(f"*-{variant('onnx-int8')}"))
    for damage, message in (("no manifest", "has no readable manifest"),
                            ("manifest without files", "has no readable manifest"),
                            ("manifest without the model", "lacks model.onnx in its manifest"),
                            ("missing model", "lacks model.onnx")):
        folder = tmp_path / damage.replace(" ", "_")
        shutil.copytree(source, folder)
        manifest = folder / "manifest.json"
        if damage == "no manifest":
            manifest.unlink()
        elif damage == "manifest without files":
            manifest.write_text("{}")
        elif damage == "manifest without the model":
            manifest.write_text('{"files": {}}')
        else:
            (folder / "model.onnx").unlink()
        assert export_problem(folder) == message, damage


def test_int8_export_is_faithful_to_pytorch(cache):
    """Per-channel weights (optimum's avx2 settings): on 300 Cranfield abstracts mean cosine 0.995, min 0.990;
    one scale per matrix gave mean 0.977, min 0.964."""
    v8 = Embedder(cache_dir=cache, backend="onnx-int8", use_cache=False, show_progress=False).encode(PROSE)
    vt = Embedder(cache_dir=cache, backend="torch", use_cache=False, show_progress=False).encode(PROSE)
    cos = np.einsum("nd,nd->n", v8, vt)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, cos


def test_onnx_export_matches_pytorch(cache):
    vo = Embedder(cache_dir=cache, backend="onnx", use_cache=False, show_progress=False).encode(PROSE)
    vt = Embedder(cache_dir=cache, backend="torch", use_cache=False, show_progress=False).encode(PROSE)
    assert np.einsum("nd,nd->n", vo, vt).min() >= 0.9999


@pytest.fixture
def judged(tmp_path):
    """PROSE as documents (two each, second with a suffix), one judged query per topic word."""
    from conftest import write_beir

    corpus = [{"_id": f"d{i}", "title": "", "text": t + (" (revised)" if i >= len(PROSE) else "")}
              for i, t in enumerate(PROSE + PROSE)]
    words = ["wing", "boundary layer", "shells", "heat transfer", "noise", "flutter"]
    queries = [{"_id": f"q{j}", "text": w} for j, w in enumerate(words)]
    qrels = [(f"q{j}", d["_id"], 1) for j, w in enumerate(words) for d in corpus if w in d["text"]]
    return write_beir(tmp_path / "judged", corpus, queries, qrels)


def test_first_documents_cuts_judgements_and_queries(judged):
    from workbench.data import load_dataset
    from workbench.errors import DatasetError
    from workbench.runners.embed_backends import first_documents

    ds = load_dataset(str(judged))
    assert first_documents(ds, None) is ds and first_documents(ds, 100) is ds
    cut = first_documents(ds, 3)                     # wing; boundary layer + heat transfer; neither
    assert cut.doc_ids == ["d0", "d1", "d2"] and cut.query_ids == ["q0", "q1", "q3"]
    assert set(cut.qrels) == {"q0", "q1", "q3"} and all(d in cut.doc_ids for v in cut.qrels.values() for d in v)
    assert cut.digest != ds.digest
    with pytest.raises(DatasetError, match="first 1 documents leave 1 judged queries"):
        first_documents(ds, 1)


def test_tradeoff_runner(cache, judged, tmp_path):
    from workbench.data import load_dataset
    from workbench.hybrid.experiment import evaluate_fusion
    from workbench.runners.embed_backends import run_embed_backends
    from workbench.tracking.sink import CollectingSink

    sink = CollectingSink()
    result = run_embed_backends([str(judged)], tmp_path / "out", ["onnx", "onnx-int8"], bench_texts=8,
                                repeats=1, folds=2, cache_dir=cache, sink=sink)
    frame = result.frame.set_index("backend")
    assert list(frame.index) == ["torch", "onnx", "onnx-int8"] and len(sink.points) == 3
    torch_direct = evaluate_fusion(load_dataset(str(judged)), folds=2,
                                   embedder=Embedder(cache_dir=cache, use_cache=False, show_progress=False))
    assert frame.loc["torch", "dense_ndcg@10"] == pytest.approx(torch_direct.metrics["dense"]["ndcg@10"])
    assert frame.loc["torch", ["dense_delta", "rrf_delta", "fused_delta"]].tolist() == [0.0, 0.0, 0.0]
    for b in ("onnx", "onnx-int8"):
        assert frame.loc[b, "dense_delta"] == pytest.approx(frame.loc[b, "dense_ndcg@10"]
                                                            - frame.loc["torch", "dense_ndcg@10"])
    assert frame.loc["onnx", "min_cosine"] >= 0.9999 and frame.loc["onnx-int8", "mean_cosine"] >= 0.99
    summary = json.loads((tmp_path / "out" / "embed_backends.json").read_text())
    assert summary["n_bench_texts"] == 8 and set(summary["backends"]) == {"torch", "onnx", "onnx-int8"}
    assert result.figure.stat().st_size > 0 and (tmp_path / "out" / "embed_backends.csv").is_file()


def test_export_is_the_fused_bert_graph_and_leaves_the_shared_model_alone(cache):
    import onnx

    from workbench.embed.model import load_model

    folder = next((cache / "exports").glob(f"*-{variant('onnx-int8')}"))
    ops = [n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node]
    # the sdpa export kept ~340 nodes and no fused attention after ONNX Runtime's level 3
    assert ops.count("Attention") == 6 and "EmbedLayerNormalization" in ops and "IsNaN" not in ops
    assert json.loads((folder / "manifest.json").read_text())["graph"] == "eager-bertfused"
    assert load_model()[0].auto_model.config._attn_implementation == "sdpa"   # put back after the eager export
