"""Glasgow raw collections -> BEIR layout (workbench.data.fetch).

Raw snippets below are copied from the public Glasgow distributions (cran, cisi, med), including their
quirks: trailing blanks on marker and text lines, a title spread over two lines, blank lines inside a
field, zero-padded query numbers in cran.qry, blank lines and doubled blanks in cranqrel.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from workbench.data import fetch
from workbench.data.fetch import (
    RAW_SOURCES,
    fetch_dataset,
    parse_tagged,
    read_collection,
    write_beir,
)
from workbench.errors import DatasetError, OfflineError

CRAN_ALL = """\
.I 1
.T
experimental investigation of the aerodynamics of a
wing in a slipstream .
.A
brenckman,m.\t
.B
j. ae. scs. 25, 1958, 324.
.W
experimental investigation of the aerodynamics of a
wing in a slipstream .
  an experimental study of a wing in a propeller slipstream was
made in order to determine the spanwise distribution of the lift
increase due to slipstream at different angles of attack of the wing
and at different free stream to slipstream velocity ratios .  the
results were intended in part as an evaluation basis for different
theoretical treatments of this problem .
  the comparative span loading curves, together with
supporting evidence, showed that a substantial part of the lift increment
produced by the slipstream was due to a /destalling/ or
boundary-layer-control effect .  the integrated remaining lift
increment, after subtracting this destalling lift, was found to agree
well with a potential flow theory .
  an empirical evaluation of the destalling effects was made for
the specific configuration of the experiment .
.I 3
.T
the boundary layer in simple shear flow past a flat plate .
.A
m. b. glauert
.B
department of mathematics, university of manchester, manchester,
england
.W
the boundary layer in simple shear flow past a flat plate .
the boundary-layer equations are presented for steady
incompressible flow with no pressure gradient .
.I 471
.T
.A
.B
.W
"""

CRAN_QRY = """\
.I 001
.W
what similarity laws must be obeyed when constructing aeroelastic models
of heated high speed aircraft .
.I 002
.W
what are the structural and aeroelastic problems associated with flight
of high speed aircraft .
.I 004
.W
what problems of heat conduction in composite slabs have been solved so
far .
.I 008
.W
can a criterion be developed to show empirically the validity of flow
solutions for chemically reacting gas mixtures based on the simplifying
assumption of instantaneous local chemical equilibrium .
"""

# query numbers are positions in cran.qry (3 = ".I 004"); 4 has only a -1 (no interest) judgement
CRANQREL = "1 3 2 \n1 1 3 \n1 471 -1\n\n\n2 1 1 \n2 471 2 \n3 3  4 \n3 1 -1\n4 471 -1\n"

CISI_ALL = """\
.I 1
.T
18 Editions of the Dewey Decimal Classifications
.A
Comaromi, J.P.
.W
   The present study is a history of the DEWEY Decimal
Classification.  The first edition of the DDC was published
in 1876, the eighteenth edition in 1971, and future editions
will continue to appear as needed.  In spite of the DDC's
long and healthy life, however, its full story has never
been told.  There have been biographies of Dewey
that briefly describe his system, but this is the first
attempt to provide a detailed history of the work that
more than any other has spurred the growth of
librarianship in this country and abroad.
.X
1\t5\t1
92\t1\t1
262\t1\t1
.I 2
.T 
Use Made of Technical Libraries
.A 
Slater, M.
.W
This report is an analysis of 6300 acts of use
in 104 technical libraries in the United Kingdom.
.X
2\t5\t2
32\t1\t2
.I 3
.T
Two Kinds of Power
An Essay on Bibliographic Control
.A
Wilson, P.
.W
    The relationships between the organization and control of writings
and the organization and control of knowledge.
.X
3\t7\t3
"""

CISI_QRY = """\
.I 1
.W
What problems and concerns are there in making up descriptive titles?
What difficulties are involved in automatically retrieving articles from
approximate titles?
What is the usual relevance of the content of articles to their titles?
.I 2
.W
How can actually pertinent data, as opposed to references or entire articles
themselves, be retrieved automatically in response to information requests?
.I 3
.W
What is information science?  Give definitions where possible.
.I 71
.W
    A new method is described to extract significant phrases in the title
and the abstreact of scientific or technical documents.

    The results of the experiment for five sets of documents have shown
that the significant phrases are effectively extracted in all cases.

"""

CISI_REL = "     1     1 0 0.000000\n     1     3 0 0.000000\n     3     2 0 0.000000\n    71     2 0 0.000000\n"

MED_ALL = """\
.I 3
.W
surfactant in fetal lamb tracheal fluid .                               
  lambs delivered by cesarean section with intact fetal circulation have
a fluid filling the trachea . analysis revealed that this fluid         
contained material high in surface activity in lambs delivered near     
term, but less surface activity in premature lambs .                    
  administration of 10 per cent oxygen to the ewe for 1 hour prior to   
delivery did not alter the surfactant properties of the fetal tracheal  
fluid .                                                                 
  two analyses of the fetal tracheal fluid revealed it to contain 146   
and 198 mg. of lipid per 100 ml., 30 to 40 per cent of which was        
phospholipid, part of the active component of surfactant .              
  the investigations reported here offer a model for further research   
into possible intrauterine factors in the pathogenesis of hyaline       
membrane disease .                                                      
.I 4
.W
placental and cord blood lipids.. comparison in a set of double ovum    
twins, a stillborn and a live-born .                                    
"""

MED_QRY = """\
.I 1
.W
the crystalline lens in vertebrates, including humans.
.I 2
.W
the relationship of blood and cerebrospinal fluid oxygen concentrations or
partial pressures.  a method of interest is polarography.
"""

MED_REL = "1 0 3 1\n1 0 4 1\n2 0 4 1\n"

RAW = {
    "cranfield": {"cran.all.1400": CRAN_ALL, "cran.qry": CRAN_QRY, "cranqrel": CRANQREL},
    "cisi": {"CISI.ALL": CISI_ALL, "CISI.QRY": CISI_QRY, "CISI.REL": CISI_REL},
    "medline": {"MED.ALL": MED_ALL, "MED.QRY": MED_QRY, "MED.REL": MED_REL},
}

EXPECTED_QRELS = {
    "cranfield": "query-id\tcorpus-id\tscore\n1\t3\t3\n1\t1\t2\n2\t1\t4\n2\t471\t3\n3\t3\t1\n",
    "cisi": "query-id\tcorpus-id\tscore\n1\t1\t1\n1\t3\t1\n3\t2\t1\n71\t2\t1\n",
    "medline": "query-id\tcorpus-id\tscore\n1\t3\t1\n1\t4\t1\n2\t4\t1\n",
}


def write_raw(folder: Path, name: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in (files or RAW[name]).items():
        (folder / fname).write_text(text)
    return folder


def make_archive(tmp_path: Path, name: str) -> Path:
    raw = write_raw(tmp_path / f"raw-{name}", name)
    archive = tmp_path / RAW_SOURCES[name].archive
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(raw.iterdir()):
            tar.add(p, arcname=p.name)
    return archive


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def counts_of(name: str) -> dict[str, int]:
    return {"cranfield": dict(n_docs=3, n_queries=4, n_judged=3, n_qrels=5),
            "cisi": dict(n_docs=3, n_queries=4, n_judged=3, n_qrels=4),
            "medline": dict(n_docs=2, n_queries=2, n_judged=2, n_qrels=3)}[name]


def test_cranfield_conversion_exact(tmp_path):
    out = write_beir(read_collection("cranfield", write_raw(tmp_path / "raw", "cranfield")), tmp_path / "out")
    corpus = read_jsonl(out / "corpus.jsonl")
    assert [d["_id"] for d in corpus] == ["1", "3", "471"]
    assert corpus[2] == {"_id": "471", "title": "", "text": ""}  # empty in the raw file too
    assert corpus[1] == {
        "_id": "3", "title": "the boundary layer in simple shear flow past a flat plate .",
        "text": "the boundary layer in simple shear flow past a flat plate . the boundary-layer equations are "
                "presented for steady incompressible flow with no pressure gradient ."}
    # .W repeats the title; field lines are stripped and joined by one space, inner double blanks kept
    assert corpus[0]["text"].startswith(corpus[0]["title"] + " an experimental study")
    assert "velocity ratios .  the results" in corpus[0]["text"]
    assert (out / "queries.jsonl").read_text().splitlines() == [
        '{"_id": "1", "text": "what similarity laws must be obeyed when constructing aeroelastic models of '
        'heated high speed aircraft ."}',
        '{"_id": "2", "text": "what are the structural and aeroelastic problems associated with flight of high '
        'speed aircraft ."}',
        '{"_id": "3", "text": "what problems of heat conduction in composite slabs have been solved so far ."}',
    ]
    assert (out / "qrels" / "test.tsv").read_text() == EXPECTED_QRELS["cranfield"]


def test_cisi_conversion_exact(tmp_path):
    out = write_beir(read_collection("cisi", write_raw(tmp_path / "raw", "cisi")), tmp_path / "out")
    corpus = read_jsonl(out / "corpus.jsonl")
    # marker lines with trailing blanks (".T "), a two-line title, .X cross-references ignored
    assert [(d["_id"], d["title"]) for d in corpus] == [
        ("1", "18 Editions of the Dewey Decimal Classifications"), ("2", "Use Made of Technical Libraries"),
        ("3", "Two Kinds of Power An Essay on Bibliographic Control")]
    assert corpus[1]["text"] == ("This report is an analysis of 6300 acts of use in 104 technical libraries in "
                                 "the United Kingdom.")
    queries = read_jsonl(out / "queries.jsonl")
    assert [q["_id"] for q in queries] == ["1", "3", "71"]  # 2 has no judgement
    assert queries[2]["text"] == (
        "A new method is described to extract significant phrases in the title and the abstreact of scientific "
        "or technical documents. The results of the experiment for five sets of documents have shown that the "
        "significant phrases are effectively extracted in all cases.")
    assert (out / "qrels" / "test.tsv").read_text() == EXPECTED_QRELS["cisi"]


def test_medline_conversion_exact(tmp_path):
    out = write_beir(read_collection("medline", write_raw(tmp_path / "raw", "medline")), tmp_path / "out")
    corpus = read_jsonl(out / "corpus.jsonl")
    assert corpus[1] == {"_id": "4", "title": "", "text": "placental and cord blood lipids.. comparison in a set "
                                                           "of double ovum twins, a stillborn and a live-born ."}
    assert read_jsonl(out / "queries.jsonl")[1] == {
        "_id": "2", "text": "the relationship of blood and cerebrospinal fluid oxygen concentrations or partial "
                            "pressures.  a method of interest is polarography."}
    assert (out / "qrels" / "test.tsv").read_text() == EXPECTED_QRELS["medline"]


@pytest.mark.parametrize("name", ["cranfield", "cisi", "medline"])
def test_rows_equal_the_shared_collection(tmp_path, name):
    """Each converted document and query equals the row with the same id in the reference folders."""
    from workbench.data import find_dataset

    try:
        ref = find_dataset(name)
    except DatasetError:
        pytest.skip(f"{name} not available (set WORKBENCH_DATA)")
    coll = read_collection(name, write_raw(tmp_path / "raw", name))
    ref_docs = {d["_id"]: d for d in read_jsonl(ref / "corpus.jsonl")}
    ref_queries = {q["_id"]: q for q in read_jsonl(ref / "queries.jsonl")}
    # rows the fixtures copy whole (the others are shortened)
    docs, queries = {"cranfield": (["1", "3", "471"], ["1", "2", "3"]), "cisi": (["1"], ["1", "3"]),
                     "medline": (["3"], ["1", "2"])}[name]
    assert [d for d in coll.corpus if d["_id"] in docs] == [ref_docs[i] for i in docs]
    assert [q for q in coll.queries if q["_id"] in queries] == [ref_queries[i] for i in queries]


def _wrap(text: str, width: int = 70) -> list[str]:
    """Break text into raw lines at single blanks only (a doubled blank must stay inside a line)."""
    lines, line = [], ""
    for i, ch in enumerate(text):
        single = ch == " " and text[i - 1] != " " and i + 1 < len(text) and text[i + 1] != " "
        if single and len(line) >= width:
            lines.append(line)
            line = ""
        else:
            line += ch
    return lines + [line] if line else lines


def raw_from_beir(ref: Path, name: str, folder: Path) -> Path:
    """Write the raw Glasgow files that the reference BEIR folder was converted from (up to wrapping)."""
    spec = RAW_SOURCES[name]
    docs, queries = read_jsonl(ref / "corpus.jsonl"), read_jsonl(ref / "queries.jsonl")
    qrels = [line.split("\t") for line in (ref / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    all_docs = []
    for d in docs:
        title = "" if name == "medline" else "\n".join([".T", *_wrap(d["title"])]) + "\n"
        extra = ".A\nsomeone, a.\n.B\nsome journal, 1960.\n" if name == "cranfield" else ""
        all_docs.append(f".I {d['_id']}\n{title}{extra}.W\n" + "".join(f"  {x}\n" for x in _wrap(d["text"])))
    by_id = {q["_id"]: q["text"] for q in queries}
    ids = [str(i) for i in range(1, spec.n_queries + 1)]
    # cran.qry numbers are not positions: write other numbers to check that positions are used
    numbers = {i: f"{2 * int(i):03d}" if name == "cranfield" else i for i in ids}
    qry = "".join(f".I {numbers[i]}\n.W\n" + "\n".join(_wrap(by_id.get(i, "an unjudged query ."))) + "\n"
                  for i in ids)
    if name == "cranfield":
        rel = "".join(f"{q} {d} {5 - int(g)} \n" for q, d, g in qrels) + "1 1 -1\n"
    elif name == "cisi":
        rel = "".join(f"{int(q):5d} {int(d):5d} 0 0.000000\n" for q, d, g in qrels)
    else:
        rel = "".join(f"{q} 0 {d} 1\n" for q, d, g in qrels)
    return write_raw(folder, name, dict(zip((spec.docs, spec.queries, spec.qrels), ("".join(all_docs), qry, rel))))


@pytest.mark.parametrize("name", ["cranfield", "cisi", "medline"])
def test_round_trip_reproduces_the_reference_files(tmp_path, name):
    """Raw files rebuilt from a reference folder convert back to byte-identical BEIR files."""
    from workbench.data import find_dataset

    try:
        ref = find_dataset(name)
    except DatasetError:
        pytest.skip(f"{name} not available (set WORKBENCH_DATA)")
    raw = raw_from_beir(ref, name, tmp_path / "raw")
    out = fetch_dataset(name, dest=tmp_path / "out", source=raw)  # also checks the published counts
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_output_loads_with_the_beir_loader(tmp_path):
    from workbench.data import load_beir

    out = write_beir(read_collection("cranfield", write_raw(tmp_path / "raw", "cranfield")), tmp_path / "cran")
    ds = load_beir(out)
    assert ds.doc_ids == ["1", "3", "471"]
    assert ds.qrels == {"1": {"3": 3, "1": 2}, "2": {"1": 4, "471": 3}, "3": {"3": 1}}


@pytest.mark.parametrize("name", ["cranfield", "cisi", "medline"])
def test_fetch_from_archive_checks_published_counts(tmp_path, monkeypatch, name):
    archive = make_archive(tmp_path, name)
    with pytest.raises(DatasetError, match=r"docs: expected \d+, got \d"):
        fetch_dataset(name, dest=tmp_path / "out", source=archive)
    assert not (tmp_path / "out").exists()
    monkeypatch.setitem(RAW_SOURCES, name, dataclasses.replace(RAW_SOURCES[name], **counts_of(name)))
    out = fetch_dataset(name, dest=tmp_path / "out", source=archive)
    assert (out / "qrels" / "test.tsv").read_text() == EXPECTED_QRELS[name]
    assert "sha256" in (out / "SOURCE.txt").read_text()
    # a second fetch replaces the folder atomically and leaves no temp folders behind
    fetch_dataset(name, dest=tmp_path / "out", source=tmp_path / f"raw-{name}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_fetch_downloads_over_http(tmp_path, monkeypatch):
    archive = make_archive(tmp_path, "medline")
    monkeypatch.setitem(RAW_SOURCES, "medline", dataclasses.replace(RAW_SOURCES["medline"], **counts_of("medline")))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = fetch_dataset("medline", dest=tmp_path / "med", source=f"{base}/{archive.name}", timeout=5)
        assert (out / "qrels" / "test.tsv").read_text() == EXPECTED_QRELS["medline"]
        with pytest.raises(DatasetError, match="HTTP 404"):
            fetch_dataset("medline", dest=tmp_path / "med2", source=f"{base}/missing.tar.gz", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_offline_fails_at_once_and_says_where_to_put_files(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OfflineError) as err:
        fetch_dataset("cranfield", dest=tmp_path / "out", source=f"http://127.0.0.1:{port}/cran.tar.gz", timeout=2)
    msg = str(err.value)
    for needle in ("WORKBENCH_DATA", "corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "data/cranfield",
                   "--from", "cran.tar.gz"):
        assert needle in msg
    assert not (tmp_path / "out").exists()


def test_raw_sources_name_the_glasgow_archives():
    assert RAW_SOURCES["cranfield"].url.endswith("/test_collections/cran/cran.tar.gz")
    assert RAW_SOURCES["cisi"].url.endswith("/test_collections/cisi/cisi.tar.gz")
    assert RAW_SOURCES["medline"].url.endswith("/test_collections/medl/med.tar.gz")


def test_unknown_collection():
    with pytest.raises(DatasetError, match="unknown collection 'trec'"):
        fetch_dataset("trec")


@pytest.mark.parametrize("text, message", [
    (".I 1\n.W\nok\n.I 1\n.W\nagain\n", r"src:4: duplicate record id 1 \(first at line 1\)"),
    (".I x1\n.W\nok\n", r"src:1: record id 'x1' is not an integer"),
    ("stray words\n.I 1\n", r"src:1: text before the first .I line: 'stray words'"),
    (".I 1\nno field yet\n", r"src:2: text in record 1 before any field"),
    (".W\ntext\n", r"src:1: field .W before the first .I line"),
    (".I\n.W\ntext\n", r"src:1: '.I' line without a record id"),
    ("\n\n", r"src: no '.I' records found"),
])
def test_tagged_format_errors(text, message):
    with pytest.raises(DatasetError, match=message):
        parse_tagged(text, "src")


def test_tagged_fields_joined_and_dot_lines_kept():
    [rec] = parse_tagged(".I 7\n.T\n  a  title \n\n.W\n.5 per cent\n  of x .\n.X\n1 2 3\n", "f")
    assert rec.id == "7" and rec.line == 1
    assert rec.fields == {"T": "a  title", "W": ".5 per cent of x .", "X": "1 2 3"}


@pytest.mark.parametrize("name, fname, text, message", [
    ("cranfield", "cranqrel", "1 1 7\n", r"cranqrel:1: relevance code 7 is not -1 or 1..4"),
    ("cranfield", "cranqrel", "1 1\n", r"cranqrel:1: expected 3 columns, found 2"),
    ("cranfield", "cranqrel", "1 9 2\n", r"cranqrel:1: document 9 is not in .*cran.all.1400 \(3 documents\)"),
    ("cranfield", "cranqrel", "\n5 1 2\n", r"cranqrel:2: query 5 is not in .*cran.qry \(4 queries\)"),
    ("cisi", "CISI.REL", "1 x 0 0.0\n", r"CISI.REL:1: document id 'x' is not an integer"),
    ("medline", "MED.REL", "1 0 3\n", r"MED.REL:1: expected 4 columns, found 3"),
    ("medline", "MED.QRY", ".I 1\n.T\ntitle only\n", r"MED.QRY:1: query 1 has no .W field"),
])
def test_bad_raw_files_name_file_and_line(tmp_path, name, fname, text, message):
    files = dict(RAW[name], **{fname: text})
    with pytest.raises(DatasetError, match=message):
        read_collection(name, write_raw(tmp_path / "raw", name, files))


def test_missing_empty_and_corrupt_inputs(tmp_path):
    raw = write_raw(tmp_path / "raw", "cisi", {"CISI.ALL": CISI_ALL, "CISI.QRY": CISI_QRY})
    with pytest.raises(DatasetError, match="raw cisi files missing: CISI.REL"):
        read_collection("cisi", raw)
    (raw / "CISI.REL").write_text("  \n")
    with pytest.raises(DatasetError, match=r"CISI.REL: file is empty"):
        read_collection("cisi", raw)
    bad = tmp_path / "cisi.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DatasetError, match=r"cisi.tar.gz: not a readable tar archive"):
        read_collection("cisi", bad)
    bad.write_bytes(b"")
    with pytest.raises(DatasetError, match="archive is empty"):
        read_collection("cisi", bad)
    with pytest.raises(DatasetError, match="no such file or folder"):
        fetch_dataset("cisi", dest=tmp_path / "o", source=tmp_path / "nowhere")


def test_default_destination_is_the_download_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "download_dir", lambda: tmp_path / "data")
    monkeypatch.setitem(RAW_SOURCES, "cisi", dataclasses.replace(RAW_SOURCES["cisi"], **counts_of("cisi")))
    assert fetch_dataset("cisi", source=write_raw(tmp_path / "raw", "cisi")) == tmp_path / "data" / "cisi"
