"""``workbench data fetch NAME``: download a Glasgow IR test collection and convert it to the BEIR layout.

The raw archives are the public distributions at http://ir.dcs.gla.ac.uk/resources/test_collections/.
Their documents and queries use the SMART tagged format: a record starts with ``.I <id>`` and each
field with a line holding only ``.T`` (title), ``.A`` (authors), ``.B`` (bibliography), ``.W`` (text),
``.X`` (cross-references) and so on. The conversion reproduces the folders in ``$WORKBENCH_DATA``:

- a field's text is its lines, stripped, blank lines dropped, joined by one space;
- corpus ``title`` is ``.T`` and ``text`` is ``.W`` (Cranfield's ``.W`` repeats the title; MEDLINE has no
  ``.T``, so its titles are empty);
- a query's text is its ``.W``; Cranfield query ids are positions 1..225 in ``cran.qry`` (the ``.I``
  numbers there are not the ids ``cranqrel`` uses);
- grades: Cranfield's Cleverdon code c in 1..4 becomes 5 - c and code -1 (no interest) is dropped;
  CISI and MEDLINE are binary (1);
- only queries with at least one judgement are kept, in file order; qrels keep the raw file order.

Offline, :func:`fetch_dataset` fails at once with an :class:`~workbench.errors.OfflineError` that says
where to put the files; ``fetch_dataset(name, source=PATH)`` converts an archive or folder already on disk.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from workbench.config import download_dir
from workbench.errors import DatasetError, OfflineError
from workbench.io import atomic_write_bytes, atomic_write_text, sha256_file

GLASGOW = "http://ir.dcs.gla.ac.uk/resources/test_collections"


@dataclass(frozen=True)
class RawSource:
    """Where a collection's raw archive lives, the raw files it holds, and the counts it must yield."""

    url: str
    docs: str
    queries: str
    qrels: str
    qrels_format: str  # "cranqrel" | "cisi" | "med": column layout of the judgements file
    n_docs: int
    n_queries: int  # queries in the raw query file
    n_judged: int  # queries with at least one kept judgement
    n_qrels: int
    description: str

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]


RAW_SOURCES: dict[str, RawSource] = {
    "cranfield": RawSource(
        url=f"{GLASGOW}/cran/cran.tar.gz", docs="cran.all.1400", queries="cran.qry", qrels="cranqrel",
        qrels_format="cranqrel", n_docs=1400, n_queries=225, n_judged=225, n_qrels=1612,
        description=(
            "Cranfield 1400 (aeronautics abstracts). Raw files: cran.all.1400, cran.qry, cranqrel from the "
            "Glasgow IR test-collection distribution.\nQuery ids are positions 1..225 in cran.qry (as used by "
            "cranqrel).\nRelevance: Cleverdon code c in 1..4 mapped to grade 5-c (4 = complete answer, "
            "1 = minimum interest); code -1 (no interest) dropped.")),
    "cisi": RawSource(
        url=f"{GLASGOW}/cisi/cisi.tar.gz", docs="CISI.ALL", queries="CISI.QRY", qrels="CISI.REL",
        qrels_format="cisi", n_docs=1460, n_queries=112, n_judged=76, n_qrels=3114,
        description=(
            "CISI (library and information science). Raw files: CISI.ALL, CISI.QRY, CISI.REL from the Glasgow "
            "IR test-collection distribution. Binary relevance (1). Only queries with judgements are kept.")),
    "medline": RawSource(
        url=f"{GLASGOW}/medl/med.tar.gz", docs="MED.ALL", queries="MED.QRY", qrels="MED.REL",
        qrels_format="med", n_docs=1033, n_queries=30, n_judged=30, n_qrels=696,
        description=(
            "MEDLINE (MED, 1033 biomedical abstracts, 30 queries). Raw files: MED.ALL, MED.QRY, MED.REL from "
            "the Glasgow IR test-collection distribution. Binary relevance (1).")),
}

_RECORD = re.compile(r"^\.I(?:\s+(\S+))?\s*$")
_FIELD = re.compile(r"^\.([A-Z])\s*$")


@dataclass
class TaggedRecord:
    """One ``.I`` record: its id as written, the line it starts on, and its fields' text."""

    id: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Collection:
    """A converted collection, ready to be written in the BEIR layout."""

    name: str
    corpus: list[dict[str, str]]  # {"_id", "title", "text"}
    queries: list[dict[str, str]]  # {"_id", "text"}, judged queries only
    qrels: list[tuple[str, str, int]]  # (query-id, corpus-id, grade)
    n_raw_queries: int

    def counts(self) -> dict[str, int]:
        return {"docs": len(self.corpus), "queries": self.n_raw_queries, "judged": len(self.queries),
                "qrels": len(self.qrels)}


def parse_tagged(text: str, source: str) -> list[TaggedRecord]:
    """Parse the SMART tagged format (``.I``/``.T``/``.A``/``.B``/``.W``/``.X`` ...) of ``source``."""
    records: list[TaggedRecord] = []
    record_lines: list[dict[str, list[str]]] = []  # each record's field lines, joined at the end
    seen: dict[str, int] = {}
    current: TaggedRecord | None = None
    tag: str | None = None

    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _RECORD.match(line)
        if m:
            if m.group(1) is None:
                raise DatasetError(f"{source}:{lineno}: '.I' line without a record id")
            try:
                rid = str(int(m.group(1)))  # "001" in cran.qry -> "1"
            except ValueError:
                raise DatasetError(f"{source}:{lineno}: record id {m.group(1)!r} is not an integer") from None
            if rid in seen:
                raise DatasetError(f"{source}:{lineno}: duplicate record id {rid} (first at line {seen[rid]})")
            seen[rid] = lineno
            current, tag = TaggedRecord(rid, lineno), None
            records.append(current)
            record_lines.append({})
            continue
        m = _FIELD.match(line)
        if m:
            if current is None:
                raise DatasetError(f"{source}:{lineno}: field .{m.group(1)} before the first .I line")
            tag = m.group(1)
            record_lines[-1].setdefault(tag, [])
            continue
        stripped = line.strip()
        if not stripped:
            continue
        if current is None or tag is None:
            where = "before the first .I line" if current is None else f"in record {current.id} before any field"
            raise DatasetError(f"{source}:{lineno}: text {where}: {stripped[:60]!r}")
        record_lines[-1][tag].append(stripped)
    if not records:
        raise DatasetError(f"{source}: no '.I' records found (empty or not in the tagged format)")
    for record, fields in zip(records, record_lines):
        record.fields = {k: " ".join(v) for k, v in fields.items()}
    return records


def _int(value: str, source: str, lineno: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{source}:{lineno}: {what} {value!r} is not an integer") from None


def parse_qrels(text: str, source: str, fmt: str) -> list[tuple[str, str, int, int]]:
    """Judgements as (query number, doc id, grade, line); rows that are not judgements of interest dropped.

    ``cranqrel``: ``query doc code`` with Cleverdon code c in 1..4 -> grade 5 - c, -1 dropped.
    ``cisi``: ``query doc 0 0.0`` -> grade 1.  ``med``: ``query 0 doc 1`` -> grade 1.
    """
    ncols = {"cranqrel": 3, "cisi": 4, "med": 4}[fmt]
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != ncols:
            raise DatasetError(f"{source}:{lineno}: expected {ncols} columns, found {len(parts)}: {line.strip()!r}")
        q = _int(parts[0], source, lineno, "query id")
        d = _int(parts[2] if fmt == "med" else parts[1], source, lineno, "document id")
        if fmt == "cranqrel":
            code = _int(parts[2], source, lineno, "relevance code")
            if code == -1:
                continue
            if not 1 <= code <= 4:
                raise DatasetError(f"{source}:{lineno}: relevance code {code} is not -1 or 1..4")
            grade = 5 - code
        else:
            grade = 1
        rows.append((str(q), str(d), grade, lineno))
    return rows


def convert(name: str, docs_text: str, queries_text: str, qrels_text: str,
            sources: tuple[str, str, str] | None = None) -> Collection:
    """Convert the three raw files of collection ``name`` (texts already read) to a :class:`Collection`."""
    spec = _spec(name)
    docs_src, queries_src, qrels_src = sources or (spec.docs, spec.queries, spec.qrels)

    corpus = [{"_id": r.id, "title": r.fields.get("T", ""), "text": r.fields.get("W", "")}
              for r in parse_tagged(docs_text, docs_src)]
    raw_queries = parse_tagged(queries_text, queries_src)
    queries: dict[str, dict[str, str]] = {}
    for pos, r in enumerate(raw_queries, start=1):
        if "W" not in r.fields:
            raise DatasetError(f"{queries_src}:{r.line}: query {r.id} has no .W field")
        qid = str(pos) if name == "cranfield" else r.id  # cranqrel numbers queries by position
        queries[qid] = {"_id": qid, "text": r.fields["W"]}

    doc_ids = {d["_id"] for d in corpus}
    grades: dict[tuple[str, str], int] = {}
    for q, d, grade, lineno in parse_qrels(qrels_text, qrels_src, spec.qrels_format):
        if q not in queries:
            raise DatasetError(f"{qrels_src}:{lineno}: query {q} is not in {queries_src} "
                               f"({len(raw_queries)} queries)")
        if d not in doc_ids:
            raise DatasetError(f"{qrels_src}:{lineno}: document {d} is not in {docs_src} ({len(corpus)} documents)")
        # a pair judged twice keeps its first position and its highest grade
        grades[(q, d)] = max(grade, grades.get((q, d), grade))
    judged = {q for q, _ in grades}
    return Collection(
        name=name, corpus=corpus,
        queries=[row for qid, row in queries.items() if qid in judged],
        qrels=[(q, d, g) for (q, d), g in grades.items()],
        n_raw_queries=len(raw_queries))


def check_counts(collection: Collection, spec: RawSource) -> None:
    """DatasetError unless the converted counts equal the published ones (a wrong or damaged archive)."""
    expected = {"docs": spec.n_docs, "queries": spec.n_queries, "judged": spec.n_judged, "qrels": spec.n_qrels}
    got = collection.counts()
    bad = [f"{k}: expected {expected[k]}, got {got[k]}" for k in expected if got[k] != expected[k]]
    if bad:
        raise DatasetError(f"{collection.name}: the raw files do not give the published collection ("
                           + "; ".join(bad) + ")")


def read_raw(name: str, path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """The texts of the raw docs/queries/qrels files in a folder or a tar archive, and their labels."""
    spec = _spec(name)
    path = Path(path)
    wanted = {"docs": spec.docs, "queries": spec.queries, "qrels": spec.qrels}
    found: dict[str, tuple[str, bytes]] = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            for role, fname in wanted.items():
                if p.is_file() and p.name.lower() == fname.lower() and role not in found:
                    found[role] = (str(p), p.read_bytes())
    elif path.is_file():
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: archive is empty")
        try:
            with tarfile.open(path, mode="r:*") as tar:
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1].lower()
                    for role, fname in wanted.items():
                        if member.isfile() and base == fname.lower() and role not in found:
                            f = tar.extractfile(member)
                            found[role] = (f"{path}:{member.name}", f.read() if f else b"")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DatasetError(f"{path}: not a readable tar archive ({e})") from None
    else:
        raise DatasetError(f"{path}: no such file or folder")
    missing = [wanted[r] for r in wanted if r not in found]
    if missing:
        raise DatasetError(f"{path}: raw {name} files missing: {', '.join(missing)} "
                           f"(expected {', '.join(wanted.values())})")
    texts, labels = {}, {}
    for role, (label, data) in found.items():
        if not data.strip():
            raise DatasetError(f"{label}: file is empty")
        try:
            texts[role] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DatasetError(f"{label}: not UTF-8 text (byte {e.start})") from None
        labels[role] = label
    return texts, labels


def read_collection(name: str, path: str | os.PathLike) -> Collection:
    """Convert the raw files in a folder or archive, without checking the published counts."""
    texts, labels = read_raw(name, path)
    return convert(name, texts["docs"], texts["queries"], texts["qrels"],
                   sources=(labels["docs"], labels["queries"], labels["qrels"]))


def write_beir(collection: Collection, dest: str | os.PathLike, source_note: str = "") -> Path:
    """Write ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv`` and ``SOURCE.txt`` to ``dest``.

    The folder is built beside ``dest`` and renamed into place, so readers never see half a collection.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise DatasetError(f"{dest}: exists and is not a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        atomic_write_text(tmp / "corpus.jsonl", "".join(json.dumps(d) + "\n" for d in collection.corpus))
        atomic_write_text(tmp / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in collection.queries))
        atomic_write_text(tmp / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n"
                          + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in collection.qrels))
        spec = RAW_SOURCES.get(collection.name)
        note = (spec.description + "\n" if spec else "") + source_note
        atomic_write_text(tmp / "SOURCE.txt", note.rstrip("\n") + "\n")
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def offline_hint(name: str) -> str:
    """Where to put a collection's files when it cannot be downloaded."""
    spec = _spec(name)
    return (f"To use {name} without network, put its BEIR files (corpus.jsonl, queries.jsonl, qrels/test.tsv) "
            f"in a folder {name}/ inside a directory listed in WORKBENCH_DATA, or in "
            f"{download_dir() / name}; or download {spec.url} where there is network and run "
            f"`workbench data fetch {name} --from PATH/{spec.archive}`.")


def download(url: str, dest: Path, timeout: float = 10, name: str = "") -> Path:
    """Download ``url`` to ``dest``; OfflineError at once when the host cannot be reached."""
    hint = offline_hint(name) if name in RAW_SOURCES else ""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            buf = io.BytesIO()
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}") as bar:
                while chunk := resp.read(1 << 16):
                    buf.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DatasetError(f"{url}: HTTP {e.code} {e.reason}. {hint}".rstrip()) from None
    except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise OfflineError(f"cannot download {name or url} from {url} ({reason}): no network? {hint}".rstrip()) \
            from None
    data = buf.getvalue()
    if not data:
        raise DatasetError(f"{url}: the download is empty")
    if total is not None and len(data) != total:
        raise DatasetError(f"{url}: download truncated ({len(data)} of {total} bytes)")
    return atomic_write_bytes(dest, data)


def fetch_dataset(name: str, dest: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                  timeout: float = 10) -> Path:
    """Download (or read from ``source``), check and convert collection ``name``; returns the BEIR folder.

    ``source``: None for the public Glasgow archive, an ``http(s)://`` URL, or a local archive or folder
    holding the raw files. The converted counts must equal the published ones (``RAW_SOURCES``).
    ``dest`` defaults to ``workbench.config.download_dir() / name``.
    """
    spec = _spec(name)
    dest = Path(dest) if dest is not None else download_dir() / name
    src = str(source) if source is not None else spec.url
    with tempfile.TemporaryDirectory(prefix=f"workbench-fetch-{name}-") as tmpdir:
        if re.match(r"^https?://", src):
            raw_path = download(src, Path(tmpdir) / spec.archive, timeout=timeout, name=name)
        else:
            raw_path = Path(src).expanduser()
        collection = read_collection(name, raw_path)
        check_counts(collection, spec)
        note = f"Converted by workbench.data.fetch from {src}"
        if raw_path.is_file():
            note += f" (sha256 {sha256_file(raw_path)})"
        return write_beir(collection, dest, source_note=note + ".")


def _spec(name: str) -> RawSource:
    try:
        return RAW_SOURCES[name]
    except KeyError:
        raise DatasetError(f"unknown collection {name!r}: fetch knows {', '.join(RAW_SOURCES)}") from None
