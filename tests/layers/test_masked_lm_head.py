import keras
import numpy as np
import pytest

from tests.test_case import assert_all_close, run_layer_test
from tfbert.layers import MaskedLMHead

B, T, D, V, P = 2, 8, 16, 50, 3


def _data():
    rng = np.random.default_rng(0)
    sequence = rng.normal(size=(B, T, D)).astype("float32")
    positions = np.array([[1, 4, 7], [0, 2, 2]], "int32")
    return sequence, positions


def test_untied_harness():
    sequence, positions = _data()
    run_layer_test(
        MaskedLMHead,
        {"vocabulary_size": V},
        {"inputs": sequence, "mask_positions": positions},
        expected_output_shape=(B, P, V),
        float32_outputs=(0,),
    )


def test_tied_harness():
    sequence, positions = _data()
    embedding = keras.layers.ReversibleEmbedding(V, D, tie_weights=True)
    embedding.build((None, None))
    run_layer_test(
        MaskedLMHead,
        {"token_embedding": embedding},
        {"inputs": sequence, "mask_positions": positions},
        expected_output_shape=(B, P, V),
        float32_outputs=(0,),
        run_mixed_precision_check=False,  # the shared embedding is float32-built
    )


def test_tied_logits_use_embedding_matrix_at_masked_positions_only():
    sequence, positions = _data()
    embedding = keras.layers.ReversibleEmbedding(V, D, tie_weights=True)
    embedding.build((None, None))
    head = MaskedLMHead(token_embedding=embedding)
    logits = np.asarray(head(sequence, positions))
    gathered = np.take_along_axis(sequence, positions[..., None], axis=1)
    hidden = np.asarray(head.layer_norm(head.dense(gathered)))
    expected = hidden @ embedding.embeddings.numpy().T + head.output_bias.numpy()
    assert_all_close(logits, expected, atol=1e-5)
    # Pre-gathered inputs give the same logits.
    assert_all_close(head(gathered), logits, atol=1e-6)
    # Changing an unmasked position changes nothing.
    changed = sequence.copy()
    changed[0, 2] = 9.0
    assert_all_close(head(changed, positions), logits, atol=0.0)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="needs a positive integer `vocabulary_size`"):
        MaskedLMHead()
    embedding = keras.layers.ReversibleEmbedding(V, D, tie_weights=True)
    with pytest.raises(ValueError, match="`vocabulary_size`=10 does not match"):
        MaskedLMHead(vocabulary_size=10, token_embedding=embedding)
    with pytest.raises(ValueError, match="must be a keras.layers.ReversibleEmbedding"):
        MaskedLMHead(token_embedding=keras.layers.Embedding(V, D))
    sequence, positions = _data()
    with pytest.raises(ValueError, match=r"`mask_positions` must have shape.*\(3,\)"):
        MaskedLMHead(vocabulary_size=V)(sequence, positions[0])
