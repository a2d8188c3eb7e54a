from __future__ import annotations

import numpy as np

from rag.encode.encoder import Encoder


def test_one_pass_equals_sentence_transformers_encode(encoder: Encoder, scifact_docs) -> None:
    texts = [f"{d.title}\n{d.text}" for d in scifact_docs[:24]] + ["short query", "x"]
    encoded = encoder.encode(texts)
    reference = encoder.model.encode(texts, batch_size=8, convert_to_numpy=True)
    assert encoded.dense.shape == (len(texts), 384)
    assert np.abs(encoded.dense - reference).max() < 1e-5
    # mean of the (unnormalised) token vectors would be the pooled vector; here each row is unit length
    for text, tokens in zip(texts, encoded.tokens, strict=True):
        assert tokens.shape[1] == 384
        assert np.allclose(np.linalg.norm(tokens, axis=1), 1.0, atol=1e-5)
        expected = min(encoder.count_tokens([text])[0] + 2, encoder.max_seq_length)
        assert tokens.shape[0] == expected


def test_empty_input(encoder: Encoder) -> None:
    encoded = encoder.encode([])
    assert encoded.dense.shape == (0, 384) and encoded.tokens == []
