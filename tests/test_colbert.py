"""ColBERT checkpoints in PyLate and Stanford layout, tiny and randomly initialised by the test itself."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel

from indexer.writer import IndexWriter
from rag.encode.colbert import ColBERTEncoder, detect_colbert
from rag.errors import ModelError
from rag.index.snapshot import Snapshot
from rag.maxsim import maxsim_packed
from rag.pipeline import Pipeline
from rag.settings import Settings

DIM = 16


def _tiny_bert(tokenizer_dir: str, folder: Path) -> tuple[BertModel, torch.Tensor]:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = BertModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, torch.randn(DIM, 32)


@pytest.fixture(scope="module")
def pylate_checkpoint(tmp_path_factory, settings: Settings) -> tuple[Path, BertModel, torch.Tensor]:
    folder = tmp_path_factory.mktemp("pylate")
    model, weight = _tiny_bert(settings.encoder_model, folder)
    (folder / "1_Dense").mkdir()
    save_file({"linear.weight": weight.contiguous()}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(json.dumps({"in_features": 32, "out_features": DIM, "bias": False}))
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 12,
                "document_length": 40,
                "attend_to_expansion_tokens": False,
                "do_query_expansion": True,
                "skiplist_words": list(string.punctuation),
            }
        )
    )
    return folder, model, weight


@pytest.fixture(scope="module")
def stanford_checkpoint(tmp_path_factory, settings: Settings) -> tuple[Path, BertModel, torch.Tensor]:
    folder = tmp_path_factory.mktemp("stanford")
    model, weight = _tiny_bert(settings.encoder_model, folder)
    # An HF_ColBERT checkpoint: the encoder's weights under "bert.", the projection as "linear.weight".
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = weight.contiguous()
    save_file(state, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "artifact.metadata").write_text(
        json.dumps(
            {
                "query_token_id": "[unused0]",
                "doc_token_id": "[unused1]",
                "query_maxlen": 12,
                "doc_maxlen": 40,
                "attend_to_mask_tokens": False,
                "mask_punctuation": True,
                "dim": DIM,
            }
        )
    )
    return folder, model, weight


def _reference(model: BertModel, weight: torch.Tensor, ids: list[int], attention: list[int]) -> np.ndarray:
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([attention])).last_hidden_state[0]
        return torch.nn.functional.normalize(hidden @ weight.T, dim=-1).numpy()


@pytest.mark.parametrize("layout", ["pylate_checkpoint", "stanford_checkpoint"])
def test_query_and_document_encoding_follow_colbert(layout: str, request) -> None:
    folder, model, weight = request.getfixturevalue(layout)
    encoder = ColBERTEncoder(folder)
    assert encoder.config.format == ("pylate" if layout.startswith("pylate") else "stanford")
    assert encoder.dim == DIM
    tok = AutoTokenizer.from_pretrained(folder)
    cls, sep, mask = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id
    q_marker, d_marker = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")

    # query: [CLS] [Q] tokens [SEP] then [MASK] up to query_length; masks scored but not attended to
    words = tok("oil price", add_special_tokens=False)["input_ids"]
    ids = [cls, q_marker, *words, sep]
    attention = [1] * len(ids) + [0] * (12 - len(ids))
    ids += [mask] * (12 - len(ids))
    [query] = encoder.encode_queries(["oil price"])
    assert query.shape == (12, DIM)
    batch = encoder.tokenize(["oil price"], is_query=True)
    assert batch["features"]["input_ids"][0].tolist() == ids
    assert batch["features"]["attention_mask"][0].tolist() == attention
    assert np.allclose(query, _reference(model, weight, ids, attention), atol=1e-5)

    # document: [CLS] [D] tokens [SEP], punctuation dropped from the scored vectors
    text = "Oil, in 1974, cost $12."
    words = tok(text, add_special_tokens=False)["input_ids"]
    ids = [cls, d_marker, *words, sep]
    [doc] = encoder.encode_documents([text])
    punctuation = {tok.convert_tokens_to_ids(c) for c in string.punctuation}
    keep = [i for i, t in enumerate(ids) if t not in punctuation]
    assert doc.shape == (len(keep), DIM)
    assert np.allclose(doc, _reference(model, weight, ids, [1] * len(ids))[keep], atol=1e-5)
    assert np.allclose(np.linalg.norm(doc, axis=1), 1, atol=1e-5)


def test_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a ColBERT checkpoint"):
        detect_colbert(tmp_path)


def test_index_and_query_path_use_the_checkpoint(
    tmp_path, pylate_checkpoint, encoder, scifact_docs, settings: Settings
) -> None:
    folder, _, _ = pylate_checkpoint
    # float16: MaxSim is checked against the checkpoint's own vectors, which a 48-byte codec approximates
    late_settings = settings.model_copy(
        update={"late_model": str(folder), "maxsim_mode": "replace", "token_codec": "float16"}
    )
    with IndexWriter(tmp_path / "ix", late_settings, encoder, show_progress=False) as writer:
        writer.upsert(scifact_docs[:10])
    snapshot = Snapshot.load(tmp_path / "ix", settings)  # the manifest, not the settings, names the model
    assert snapshot.manifest["multivector"] == {
        "codec": "float16",
        "pq_bytes": 48,
        "dim": DIM,
        "model": str(folder),
        "projection": "",
        "projection_dim": 0,
    }
    assert snapshot.multivector.dim == DIM
    pipeline = Pipeline(snapshot, late_settings, encoder)
    retrieval = pipeline.retrieve(scifact_docs[2].title, top_k=10)
    # the final order is MaxSim with the checkpoint's query vectors over its document vectors
    colbert = ColBERTEncoder(folder)
    query = colbert.encode_queries([scifact_docs[2].title])[0]
    rows = [int(np.flatnonzero(snapshot.chunk_ids == cid)[0]) for cid, _ in retrieval.rankings["rrf"]]
    offsets = np.asarray(snapshot.multivector.offsets)
    tokens = np.concatenate([snapshot.multivector.row(r) for r in rows])
    packed = np.concatenate([[0], np.cumsum([offsets[r + 1] - offsets[r] for r in rows])])
    expected = maxsim_packed(query, tokens, packed)
    got = dict(retrieval.rankings["maxsim"])
    for row, score in zip(rows, expected, strict=True):
        assert got[str(snapshot.chunk_ids[row])] == pytest.approx(float(score), abs=1e-3)
    assert [h.scores["maxsim"] for h in retrieval.hits] == sorted(
        (h.scores["maxsim"] for h in retrieval.hits), reverse=True
    )
