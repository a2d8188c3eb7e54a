"""Token-vector codecs: the maths of each, and whole indexes built, compressed and queried with them."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from indexer.writer import IndexWriter
from rag.errors import InputError
from rag.index.codecs import load_codec, make_codec
from rag.index.codecs.binary import BinaryCodec
from rag.index.codecs.pq import ProductQuantizationCodec, group_count
from rag.index.multivector import MultiVectorIndex, MultiVectorParams, MultiVectorWriter
from rag.index.snapshot import Snapshot
from rag.maxsim import maxsim_packed
from rag.pipeline import Pipeline


def _unit_tokens(rng: np.random.Generator, n: int, dim: int = 64) -> np.ndarray:
    # a shared direction plus noise, as real token vectors have (that is what the binary centre is for)
    v = rng.standard_normal((n, dim)).astype(np.float32) + 2.0 * rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["binary", "pq"])
def test_lookup_scoring_equals_the_product_with_decoded_vectors(name: str) -> None:
    rng = np.random.default_rng(0)
    vectors, query = _unit_tokens(rng, 3000), _unit_tokens(rng, 7)
    codec = make_codec(name, 64, pq_bytes=16)
    codec.fit(vectors)
    codes = codec.encode(vectors)
    assert codes.dtype == np.uint8 and codes.shape == (3000, codec.width)
    assert codec.bytes_per_vector == (8 if name == "binary" else 16)
    decoded = codec.decode(codes)
    np.testing.assert_allclose(codec.similarities(query, codes), decoded @ query.T, atol=1e-4)


def test_binary_codes_are_signs_around_the_centre() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit_tokens(rng, 500, 16)
    codec = BinaryCodec(16)
    codec.fit(vectors)
    assert codec.centre is not None and codec.scale is not None
    np.testing.assert_allclose(codec.centre, vectors.mean(axis=0), atol=1e-6)
    bits = np.unpackbits(codec.encode(vectors), axis=1).astype(bool)
    assert (bits == (vectors > codec.centre)).all()
    decoded = codec.decode(codec.encode(vectors))
    assert (np.sign(decoded - codec.centre) == np.where(bits, 1, -1)).all()
    with pytest.raises(ValueError, match="divisible by 8"):
        BinaryCodec(12)


def test_binary_scoring_follows_a_refit_and_a_reloaded_state() -> None:
    """The lookup table is built once per state: fitting again or loading another state replaces it."""
    rng = np.random.default_rng(2)
    first, second, query = _unit_tokens(rng, 400, 16), _unit_tokens(rng, 400, 16) * -1.0, _unit_tokens(rng, 3, 16)
    codec = BinaryCodec(16)
    codec.fit(first)
    codes = codec.encode(first)
    before = codec.similarities(query, codes)
    codec.fit(second)
    np.testing.assert_allclose(codec.similarities(query, codes), codec.decode(codes) @ query.T, atol=1e-5)
    assert not np.allclose(codec.similarities(query, codes), before)
    other = BinaryCodec(16)
    other.fit(first)
    codec.load_state(other.state())
    np.testing.assert_array_equal(codec.similarities(query, codes), before)


def test_pq_reconstructs_better_than_chance_and_reloads(tmp_path) -> None:
    rng = np.random.default_rng(2)
    vectors = _unit_tokens(rng, 4000)
    codec = ProductQuantizationCodec(64, 16)
    codec.fit(vectors)
    codes = codec.encode(vectors)
    error = np.linalg.norm(codec.decode(codes) - vectors, axis=1).mean()
    shuffled = np.linalg.norm(codec.decode(rng.permutation(codes)) - vectors, axis=1).mean()
    assert error < 0.5 * shuffled
    codec.save(tmp_path)
    again = load_codec(tmp_path, "pq", 64)
    assert again.same_codes_as(codec) and np.array_equal(again.encode(vectors), codes)
    assert group_count(384, 48) == 48 and group_count(128, 48) == 32 and group_count(384, 50) == 48


def test_unknown_codec_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="unknown token codec 'zip'"):
        make_codec("zip", 384)


def test_writer_fits_on_first_block_and_reencodes_copied_rows(tmp_path) -> None:
    rng = np.random.default_rng(3)
    rows = [_unit_tokens(rng, n) for n in (300, 1, 0, 500, 200)]
    source = MultiVectorWriter(tmp_path / "f16", make_codec("float16", 64))
    source.append(rows)
    source.finish()
    f16 = MultiVectorIndex.load(tmp_path / "f16", MultiVectorParams("float16", 64))
    writer = MultiVectorWriter(tmp_path / "pq", make_codec("pq", 64, 16))
    writer.copy_rows(f16, np.array([0, 1, 2, 3]))
    writer.append([rows[4]])
    assert writer.finish() == 1001
    pq = MultiVectorIndex.load(tmp_path / "pq", MultiVectorParams("pq", 64))
    assert (tmp_path / "pq" / "codes.u8").stat().st_size == 1001 * 16
    assert [len(pq.row(i)) for i in range(5)] == [300, 1, 0, 500, 200]
    query = _unit_tokens(rng, 5)
    candidates = np.array([4, 2, 0, 3, 1])
    exact = maxsim_packed(query, *f16.gather(candidates))
    approx = pq.scores(query, candidates)
    assert approx[1] == 0.0  # the row without tokens
    np.testing.assert_allclose(approx, exact, atol=0.15 * len(query))
    # same codec and state: a further copy is byte for byte
    again = MultiVectorWriter(tmp_path / "again", pq.codec)
    again.copy_rows(pq, np.array([3, 4]))
    again.finish()
    copied = MultiVectorIndex.load(tmp_path / "again", MultiVectorParams("pq", 64))
    assert np.array_equal(np.asarray(copied.codes), np.asarray(pq.codes[pq.offsets[3] :]))


def _top(pipeline: Pipeline, question: str, n: int = 10) -> list[str]:
    return [h.doc_id for h in pipeline.retrieve(question, top_k=n).hits]


def test_index_built_compressed_and_converted_ranks_like_float16(
    tmp_path, encoder, scifact_docs, settings, scifact_dir
) -> None:
    """Real passages and queries: a pq index (built so) and a binary one (converted by `rag index compress`)
    keep MaxSim's top documents of the float16 index, at 48 bytes per 384-d token vector."""
    from tests.conftest import read_jsonl

    settings = settings.model_copy(update={"token_codec": "float16"})  # the reference (binary is the default)
    with IndexWriter(tmp_path / "f16", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs, "sci")
    pq_settings = settings.model_copy(update={"token_codec": "pq"})
    with IndexWriter(tmp_path / "pq", pq_settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs, "sci")
    with IndexWriter(tmp_path / "bin", settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:30], "sci")
    result = CliRunner().invoke(app, ["index", "compress", "--index", str(tmp_path / "bin"), "--codec", "binary"])
    assert result.exit_code == 0, result.output
    assert "float16 → binary, 768 → 48 bytes per token vector" in result.output
    with IndexWriter(tmp_path / "bin", settings, encoder, show_progress=False) as writer:  # later adds: same codec
        before = writer.snapshot.multivector.codec.state() if writer.snapshot else {}
        writer.upsert(scifact_docs[30:], "sci")
        after = writer.snapshot.multivector.codec.state() if writer.snapshot else {}
    assert before.keys() == after.keys() == {"centre", "scale"}
    assert all(np.array_equal(before[k], after[k]) for k in before)

    snapshots = {name: Snapshot.load(tmp_path / name, settings) for name in ("f16", "pq", "bin")}
    for name, snap in snapshots.items():
        snap.verify()
        stats = snap.stats()
        assert stats["token_codec"] == {"f16": "float16", "pq": "pq", "bin": "binary"}[name]
        assert stats["bytes_per_token_vector"] == (768 if name == "f16" else 48)
    assert snapshots["pq"].stats()["bytes"]["multivector"] < snapshots["f16"].stats()["bytes"]["multivector"] / 10
    pipelines = {name: Pipeline(snap, settings, encoder) for name, snap in snapshots.items()}
    ids = {d.id for d in scifact_docs}
    qrels: dict[str, set[str]] = {}
    for line in (scifact_dir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        if doc in ids:
            qrels.setdefault(qid, set()).add(doc)
    questions = [q["text"] for q in read_jsonl(scifact_dir / "queries.jsonl") if q["_id"] in qrels]
    questions += [d.title for d in scifact_docs[:10]]
    agreement: dict[str, list[bool]] = {"pq": [], "bin": []}
    for question in questions:
        reference = _top(pipelines["f16"], question, 3)
        for name in agreement:
            agreement[name].append(reference[0] in _top(pipelines[name], question, 3))
    assert len(questions) >= 10
    assert np.mean(agreement["pq"]) >= 0.9 and np.mean(agreement["bin"]) >= 0.8
