"""Score fusion, and choosing an index's final stage without labels (indexer/final_stage.py)."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from indexer.final_stage import HeldOutEngine, HeldOutPassage, choose, document_ndcg, record_final_stage
from indexer.writer import IndexWriter
from rag.encode.projection import save_head
from rag.index.engine import LocalEngine
from rag.index.manifest import FinalStageChoice
from rag.index.snapshot import Snapshot
from rag.objects import Document
from rag.pipeline import Pipeline
from rag.retrieval import FALLBACK_MODE, QueryInput, Recipe, retrieve
from rag.score_fusion import score_fusion, standardised
from rag.settings import Settings


def test_score_fusion_sums_each_paths_standardised_scores() -> None:
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]
    bm25 = [(2, 12.0), (4, 4.0)]
    fused = score_fusion({"dense": dense, "bm25": bm25}, [1, 2, 3, 4], {"bm25": 2.0})
    zd = {1: 1.224744871, 2: 0.0, 3: -1.224744871}  # (s - mean) / std of 0.9, 0.5, 0.1
    zb = {2: 1.0, 4: -1.0}
    expected = {r: zd.get(r, zd[3]) + 2.0 * zb.get(r, -1.0) for r in (1, 2, 3, 4)}
    assert [f.id for f in fused] == sorted(expected, key=lambda r: -expected[r])
    for f in fused:
        assert f.score == pytest.approx(expected[f.id])
        assert sum(f.contributions.values()) == pytest.approx(f.score)
    # a path whose scores do not spread adds nothing; ties keep the candidates' order
    flat = score_fusion({"dense": [(5, 1.0), (6, 1.0)]}, [6, 5])
    assert [f.id for f in flat] == [6, 5] and all(f.score == 0 for f in flat)
    assert standardised([]) == {}


def test_document_ndcg_counts_documents_not_passages() -> None:
    doc_ids = np.array(["a", "a", "b", "c"])
    assert document_ndcg([(0, 3.0), (1, 2.0), (2, 1.0)], doc_ids, "b") == pytest.approx(1 / math.log2(3))
    assert document_ndcg([(3, 1.0)], doc_ids, "c") == 1.0
    assert document_ndcg([(0, 1.0), (2, 1.0)], doc_ids, "c") == 0.0
    assert document_ndcg([(0, 1.0), (2, 1.0), (3, 1.0)], doc_ids, "c", cutoff=2) == 0.0


def test_choose_climbs_only_on_clear_gains_and_doubt_keeps_rrf() -> None:
    rng = np.random.default_rng(3)
    base = list(rng.uniform(0, 1, 200))
    steady = [b + 0.02 for b in base]  # small, certain gain
    noisy = [b + g for b, g in zip(base, rng.normal(0.03, 0.6, 200), strict=True)]  # larger mean, all noise
    mode, weight, reason = choose({"off": base, "scores": steady, "fuse": steady, "replace": noisy})
    assert (mode, weight) == ("scores", 1.0) and "scores vs rrf +2.00" in reason and "replace vs scores" in reason
    mode, weight, reason = choose({"off": base, "scores": base, "fuse": [b - 0.05 for b in base], "replace": noisy})
    assert (mode, weight) == ("off", 1.0) and "(taken)" not in reason
    bigger = [b + 0.05 for b in base]
    assert choose({"off": base, "scores": steady, "fuse": steady, "replace": bigger})[:2] == ("replace", 1.0)
    assert choose({"off": base, "scores": base, "fuse": steady, "replace": steady})[:2] == ("fuse", 1.0)


def test_choose_takes_another_maxsim_weight_only_for_the_chosen_mode_and_only_on_a_clear_gain() -> None:
    rng = np.random.default_rng(5)
    base = list(rng.uniform(0, 1, 200))
    steady = [b + 0.02 for b in base]
    better = [b + 0.04 for b in base]  # steady + 0.02 for certain
    noisy = [s + g for s, g in zip(steady, rng.normal(0.03, 0.6, 200), strict=True)]
    scores = {"off": base, "scores": steady, "fuse": base, "replace": base}
    mode, weight, reason = choose({**scores, "scores@2": better, "scores@0.5": noisy, "fuse@2": [b + 1 for b in base]})
    assert (mode, weight) == ("scores", 2.0)
    assert "scores@2 vs scores +2.00" in reason and "scores@0.5 vs scores@2" in reason and "fuse@2" not in reason
    assert choose({**scores, "scores@2": noisy, "scores@0.5": steady})[:2] == ("scores", 1.0)  # doubt keeps 1
    assert choose({**scores, "scores@2": steady, "scores@0.5": better})[:2] == ("scores", 0.5)
    # RRF kept: no weight is tried, since RRF has no MaxSim in it
    mode, weight, reason = choose({"off": steady, "scores": base, "fuse": base, "replace": base, "scores@2": better})
    assert (mode, weight) == ("off", 1.0) and "scores@2" not in reason


@pytest.fixture(scope="module")
def index(tmp_path_factory, scifact_docs: list[Document], encoder, settings: Settings) -> Path:
    directory = tmp_path_factory.mktemp("final-stage") / "ix"
    with IndexWriter(directory, settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs, "papers")
    return directory


def _passage(snapshot: Snapshot, row: int) -> tuple[str, HeldOutPassage]:
    chunk = snapshot.store.get_chunks([str(snapshot.chunk_ids[row])], snapshot.generation)[str(snapshot.chunk_ids[row])]
    text = f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text
    held = HeldOutPassage(
        row=row,
        document=str(snapshot.doc_ids[row]),
        dense=np.asarray(snapshot.dense.vectors[row], np.float32),
        bm25_tokens=snapshot.bm25_tokenize(text),
        tokens=snapshot.multivector.row(row),
    )
    return text, held


def _uniform(tokens: np.ndarray) -> tuple[np.ndarray, None]:
    return tokens, None


def test_a_passage_scored_from_outside_scores_as_it_does_inside(index: Path, settings: Settings, encoder) -> None:
    """The held-out engine, given a passage exactly as the index holds it, changes nothing: BM25 and
    MaxSim of a passage from outside the index equal its indexed scores, and every stage's ranking is
    the local engine's."""
    snapshot = Snapshot.load(index, settings)
    local = LocalEngine(snapshot)
    recipe = Recipe.from_settings(settings, depth=30)
    for row in (0, 7, 19):
        text, held = _passage(snapshot, row)
        question = text.split(". ")[0][:200]
        query_tokens = snapshot.bm25_tokenize(question)
        rows, scores = snapshot.sparse.scores(query_tokens)
        inside = dict(zip(rows.tolist(), scores.tolist(), strict=True)).get(row, 0.0)
        assert snapshot.sparse.score_outside(query_tokens, held.bm25_tokens) == pytest.approx(inside, rel=1e-9)
        encoded = encoder.encode([question])
        indexed = float(snapshot.multivector.scores(encoded.tokens[0], np.array([row]))[0])
        assert local.maxsim_outside(encoded.tokens[0], held.tokens, None) == pytest.approx(indexed, rel=1e-5)
        query = QueryInput(question, encoded.dense[0], partial(_uniform, encoded.tokens[0]))
        a = retrieve(local, query, recipe, alternative=True)
        b = retrieve(HeldOutEngine(local, held), query, recipe, alternative=True)
        assert a.stages.keys() == b.stages.keys()
        for stage in a.stages:
            assert [r for r, _ in a.stages[stage]] == [r for r, _ in b.stages[stage]], stage


def test_an_adapted_index_scores_a_passage_from_outside_as_it_holds_it(
    tmp_path: Path, scifact_docs: list[Document], settings: Settings, encoder
) -> None:
    """The head projects what the raw index stores. Before, a held-out passage's exact token vectors
    went through the head while the indexed rows went through it from their binary codes, so every
    held-out passage outscored the rest and the choice after `rag adapt` took `replace` (cisi: +14.5
    points over `scores` on pseudo-queries, 1.2–2.3 points below it on the real queries). Passages added
    after the head are projected like the old rows."""
    directory = tmp_path / "ix"
    with IndexWriter(directory, settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:20], "papers")
        head = np.random.default_rng(0).standard_normal((32, 384)).astype(np.float32)
        save_head(directory / "models" / "random", head, {})
        writer.set_projection("models/random")
        later = Document(id="later", title="Sleep", text="Sleep restores memory. Dreams happen in REM sleep.")
        writer.upsert([later], "papers")
    snapshot = Snapshot.load(directory, settings)
    assert snapshot.params.token_codec == "binary" and snapshot.projected is not None
    local = LocalEngine(snapshot)
    for row in (0, 7, len(snapshot) - 1):
        text, _ = _passage(snapshot, row)
        exact = encoder.encode([text]).tokens[0]  # the passage's own vectors, never through the codec
        question = encoder.encode_questions([text.split(". ")[0][:200]]).tokens[0]
        ((_, inside),) = local.maxsim(question, np.array([row]), None)
        assert local.maxsim_outside(question, exact, None) == pytest.approx(inside, rel=1e-4), row


def test_the_choice_is_committed_to_the_manifest_and_auto_uses_it(
    tmp_path: Path, scifact_docs: list[Document], encoder, settings: Settings
) -> None:
    choosing = settings.model_copy(update={"final_stage_min_passages": 10, "final_stage_queries": 24})
    directory = tmp_path / "ix"
    with IndexWriter(directory, choosing, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:30], "papers")
        before = writer.snapshot
        assert before is not None and before.params.final_stage is None
        assert Pipeline(before, choosing, encoder).maxsim_mode == FALLBACK_MODE
        choice = record_final_stage(writer, choosing)
        after = writer.snapshot
    assert choice is not None and after is not None
    assert choice.mode in ("off", "replace", "fuse", "scores") and choice.queries == 24
    assert choice.maxsim_weight in (1.0, 2.0, 0.5) and choice.reason
    weighted = {f"{mode}@{w:g}" for mode in ("fuse", "scores") for w in (2.0, 0.5)}
    assert set(choice.ndcg) == {"off", "replace", "fuse", "scores"} | weighted
    assert after.generation == before.generation + 1
    manifest = json.loads((after.directory / "manifest.json").read_text())
    assert manifest["final_stage"]["mode"] == choice.mode
    # only the manifest is new: every other file is the previous snapshot's, hard-linked
    for rel in manifest["files"]:
        assert (after.directory / rel).stat().st_ino == (before.directory / rel).stat().st_ino
    Snapshot.load(directory, choosing).verify()
    assert Pipeline(Snapshot.load(directory, choosing), choosing, encoder).maxsim_mode == choice.mode
    assert manifest["final_stage"]["maxsim_weight"] == choice.maxsim_weight
    older = {k: v for k, v in manifest["final_stage"].items() if k != "maxsim_weight"}  # before weights were chosen
    assert FinalStageChoice.from_manifest(older).maxsim_weight == 1.0
    assert Pipeline(Snapshot.load(directory, choosing), choosing, encoder).maxsim_weight == choice.maxsim_weight
    fixed = choosing.model_copy(update={"maxsim_mode": "replace", "weight_maxsim": 3.0})
    assert Pipeline(Snapshot.load(directory, fixed), fixed, encoder).maxsim_mode == "replace"
    assert Pipeline(Snapshot.load(directory, fixed), fixed, encoder).maxsim_weight == 3.0
    # later writes keep the choice; too small an index is not chosen for
    with IndexWriter(directory, choosing, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[30:], "papers")
        assert writer.snapshot is not None and writer.snapshot.params.final_stage == choice
        assert record_final_stage(writer, settings) is None  # 40 documents < the default minimum
