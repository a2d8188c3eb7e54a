"""`rag adapt` on a small real corpus: a few training steps change the head, the snapshot uses it,
writes keep it, an interrupted run resumes, and the evaluation reports raw and adapted MaxSim."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.runner import EvalOptions, run_eval
from indexer.adapt import (
    RUN_DIR,
    STATE_FILE,
    AdaptOptions,
    _retrieves_own_passage,
    _training_data,
    adapt_index,
    initial_projection,
    train_projection,
)
from indexer.generated_queries import QUESTIONS_DIR
from indexer.pseudo_queries import NO_SPAN, PseudoQuery, inverse_cloze_queries, kept_token_mask
from indexer.writer import IndexWriter
from rag.encode.encoder import Encoder
from rag.encode.projection import load_head, principal_directions, project_tokens
from rag.errors import IndexNotFoundError, InputError
from rag.index.snapshot import Snapshot
from rag.objects import Document, Stage
from rag.pipeline import Pipeline
from rag.query_weights import query_token_weights
from rag.retrieval import FALLBACK_MODE, MODE_STAGES
from rag.sentences import sentence_spans
from rag.settings import Settings
from tests.test_eval import _tiny_dataset

SMALL = AdaptOptions(max_steps=4, dim=16, batch_size=4, negatives=2, show_progress=False, checkpoint_every_s=0)


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """float16 token vectors: the projected rows are compared with the projection of the stored ones,
    which the 48-byte codecs only approximate."""
    return settings.model_copy(update={"token_codec": "float16"})


@pytest.fixture
def index(tmp_path: Path, scifact_docs: list[Document], settings: Settings, encoder: Encoder) -> Path:
    directory = tmp_path / "index"
    with IndexWriter(directory, settings, encoder=encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:30], "scifact")
    return directory


def test_sentences_and_ict_queries_leave_the_sentence_out() -> None:
    text = "Cells divide. The nucleus holds the genome of the cell! Short. Proteins fold into shapes."
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "Cells divide.",
        "The nucleus holds the genome of the cell!",
        "Short.",
        "Proteins fold into shapes.",
    ]
    queries = inverse_cloze_queries([7], ["A unique title here"], [text], [True], random.Random(1), keep_probability=0)
    ict, title = queries
    assert ict.row == 7 and ict.text in {"The nucleus holds the genome of the cell!", "Proteins fold into shapes."}
    encoded = "A unique title here\n" + text
    assert encoded[ict.removed[0] : ict.removed[1]] == ict.text
    assert title.text == "A unique title here" and encoded[: title.removed[1]] == title.text
    # a title two documents share is no query; a one-sentence passage makes no ICT query
    assert (
        inverse_cloze_queries(
            [1, 2], ["Same", "Same"], ["One sentence only here.", "x"], [True, True], random.Random(1)
        )
        == []
    )
    offsets = [(0, 0), (0, 5), (6, 9), (10, 14), (0, 0)]
    assert kept_token_mask(offsets, (6, 14)) == [True, True, False, False, True]
    assert kept_token_mask(offsets, NO_SPAN) == [True] * 5


def test_projection_maths() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 12)).astype(np.float32)
    basis = principal_directions(vectors, 4)
    assert basis.shape == (4, 12)
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-5)
    # projecting unit vectors equals projecting the unnormalised ones: no re-encoding needed
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(project_tokens(unit, basis), project_tokens(vectors * 3.0, basis), atol=1e-5)
    with pytest.raises(ValueError):
        principal_directions(vectors, 13)


def test_adapt_trains_a_head_the_query_path_uses(index: Path, settings: Settings, encoder: Encoder) -> None:
    raw = Snapshot.load(index, settings)
    assert raw.projected is None
    result = adapt_index(index, settings, SMALL)
    assert result.steps == 4 and result.examples >= SMALL.batch_size and not result.resumed
    assert result.generation == raw.generation + 1 and np.isfinite(result.last_loss)
    assert not (index / RUN_DIR).exists()  # the finished run leaves no state behind

    weight = load_head(result.model_dir)
    assert weight.shape == (16, 384)
    assert not np.allclose(weight, initial_projection(raw.multivector, SMALL), atol=1e-4)  # training moved it
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["out_features"] == 16 and config["module_input_name"] == "token_embeddings"
    assert json.loads((result.model_dir / "adapt.json").read_text())["steps"] == 4

    snap = Snapshot.load(index, settings)
    snap.verify()
    assert snap.params.late_projection == f"models/{result.model_dir.name}"
    assert snap.projected is not None and snap.projected.dim == 16
    assert snap.projected.n_vectors == snap.multivector.n_vectors
    row = snap.multivector.row(3)
    np.testing.assert_allclose(snap.projected.row(3), project_tokens(row, weight), atol=2e-3)

    question = "What do tumour cells need to grow?"
    adapted = Pipeline(snap, settings, encoder=encoder).retrieve(question)
    unadapted = Pipeline(snap, settings, encoder=encoder, adapted=False).retrieve(question)
    assert adapted.final_stage == Stage.FINAL and adapted.rankings["rrf"] == unadapted.rankings["rrf"]
    assert adapted.rankings["maxsim"] != unadapted.rankings["maxsim"]
    scores = [s for _, s in adapted.rankings["maxsim"]]
    assert scores == sorted(scores, reverse=True)

    # documents added later are projected with the same head
    with IndexWriter(index, settings, encoder=encoder, show_progress=False) as writer:
        extra = Document(id="extra", title="Sleep", text="Sleep restores memory. Dreams happen in REM sleep.")
        writer.upsert([extra], "scifact")
    after = Snapshot.load(index, settings)
    after.verify()
    assert after.params.late_projection == snap.params.late_projection
    assert after.projected is not None and after.projected.n_vectors == after.multivector.n_vectors
    last = len(after) - 1
    np.testing.assert_allclose(
        after.projected.row(last), project_tokens(after.multivector.row(last), weight), atol=2e-3
    )


def test_an_interrupted_run_resumes(index: Path, settings: Settings, encoder: Encoder) -> None:
    snap = Snapshot.load(index, settings)
    run = index / RUN_DIR
    data, resumed = _training_data(run, snap, encoder, settings, SMALL)
    assert not resumed
    # the first two steps, then "the process dies": state and data stay on disk
    train_projection(snap.multivector, data, AdaptOptions(**{**SMALL.__dict__, "max_steps": 2}), run / STATE_FILE)
    assert (run / STATE_FILE).exists()
    result = adapt_index(index, settings, SMALL)
    assert result.resumed and result.steps == 4


def test_the_filter_keeps_questions_that_find_their_passage(index: Path, settings: Settings, encoder: Encoder) -> None:
    snap = Snapshot.load(index, settings)
    text = snap.store.get_chunks([str(snap.chunk_ids[0])], snap.generation)[str(snap.chunk_ids[0])].text
    queries = [PseudoQuery(text, 0), PseudoQuery(text, 5)]
    assert _retrieves_own_passage(snap, encoder, settings, queries, depth=1) == [True, False]
    assert _retrieves_own_passage(snap, encoder, settings, [], depth=1) == []


def test_adapt_trains_on_written_questions(index: Path, settings: Settings) -> None:
    options = AdaptOptions(
        max_steps=3, dim=16, batch_size=4, negatives=2, show_progress=False, checkpoint_every_s=0, generated=8
    )
    both = adapt_index(index, settings, AdaptOptions(**{**options.__dict__, "queries": "both"}))
    written, reused, usable, kept = both.writing
    assert written == 8 and reused == 0 and kept <= usable <= 8
    assert both.sources.get("generated", 0) == kept and both.sources["inverse cloze"] > 0
    (questions,) = (index / QUESTIONS_DIR).glob("*.jsonl")  # kept under the index for the next run
    assert len(questions.read_text("utf-8").splitlines()) == 8
    head = json.loads((both.model_dir / "adapt.json").read_text())
    assert head["queries"] == "both" and head["sources"] == both.sources

    # the next run reuses every written question, and a budget caps the training queries
    budget = adapt_index(index, settings, AdaptOptions(**{**options.__dict__, "queries": "both", "query_budget": 5}))
    assert budget.writing[:2] == (0, 8) and budget.examples == 5


def test_bad_adapt_requests(tmp_path: Path, index: Path, settings: Settings) -> None:
    with pytest.raises(IndexNotFoundError, match="no index"):
        adapt_index(tmp_path / "empty", settings, SMALL)
    assert not (tmp_path / "empty").exists()  # a mistyped path is not created
    with pytest.raises(InputError, match="exceeds"):
        adapt_index(index, settings, AdaptOptions(dim=999, show_progress=False))
    with pytest.raises(InputError, match="positive"):
        adapt_index(index, settings, AdaptOptions(max_steps=0, show_progress=False))


def test_eval_adapt_reports_raw_and_adapted(tmp_path: Path, squad_dir: Path, settings: Settings) -> None:
    dataset = _tiny_dataset(tmp_path / "tiny", squad_dir)
    report = run_eval(EvalOptions(dataset, tmp_path / "run", show_progress=False, warmup=1, adapt=SMALL), settings)
    others = [stage for mode, stage in MODE_STAGES.items() if mode != FALLBACK_MODE]
    assert list(report["stages"]) == ["bm25", "dense", "rrf", Stage.MAXSIM_RAW, *others, Stage.FINAL]
    assert report["maxsim_tokens"] == "adapted" and report["adapt"]["steps"] == 4
    assert report["adapt"]["train_s"] > 0
    assert "Adapted ColBERT head" in (tmp_path / "run" / "report.md").read_text()


def test_query_token_weights(encoder: Encoder) -> None:
    question = "What causes hypothyroidism?"
    offsets = encoder.tokenizer(question, return_offsets_mapping=True)["offset_mapping"]
    pieces = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(question)["input_ids"])
    idf = {"what": 0.1, "causes": 1.0, "hypothyroidism": 5.0}.get
    assert np.allclose(query_token_weights(question, offsets, idf), 1.0)
    skipped = query_token_weights(question, offsets, idf, skip_punctuation=True)
    assert skipped[pieces.index("?")] == 0.0 and skipped[0] > 0  # [CLS] stays
    weighted = query_token_weights(question, offsets, lambda w: idf(w.lower()), mode="idf")
    rare = [weighted[i] for i, p in enumerate(pieces) if p.startswith("##") or p == "h" or p.startswith("hypo")]
    assert len(set(np.round(rare, 6))) == 1  # every piece of the word weighs what the word does
    assert rare[0] > weighted[pieces.index("causes")] > weighted[pieces.index("what")]
    assert np.isclose(weighted.mean(), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        query_token_weights(question, offsets, idf, mode="bogus")


def test_rag_adapt_command(tmp_path: Path, index: Path, scifact_docs: list[Document]) -> None:
    labelled = tmp_path / "labelled"
    (labelled / "qrels").mkdir(parents=True)
    (labelled / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": d.title}) + "\n" for i, d in enumerate(scifact_docs[:5]))
    )
    (labelled / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d.id}\t1\n" for i, d in enumerate(scifact_docs[:5]))
    )
    command = [sys.executable, "-m", "cli", "adapt", "--index", str(index), "--max-steps", "2", "--dim", "8"]
    command += ["--batch-size", "4", "--negatives", "1", "--labelled", str(labelled), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "trained 2 steps" in done.stdout and "models/adapted-gen000002" in done.stdout
    info = json.loads((index / "models" / "adapted-gen000002" / "adapt.json").read_text())
    assert info["labelled_pairs"] == 5 and info["steps"] == 2
    assert "training queries:" in done.stdout and "labelled" in done.stdout and info["queries"] == "ict"

    bad = subprocess.run([*command[:6], "--queries", "written", "-q"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--queries 'written'" in bad.stderr

    empty = subprocess.run(
        [sys.executable, "-m", "cli", "adapt", "--index", str(tmp_path / "none"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert empty.returncode == 2 and "error:" in empty.stderr and "no index" in empty.stderr
