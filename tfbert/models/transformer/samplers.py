"""Samplers by name: keras-hub's where they fit, tfbert's beam search where they lack."""

from tfbert.models.transformer.beam_sampler import BeamSampler, top_index

SAMPLER_NAMES = ("greedy", "beam", "top_k", "top_p")


def greedy_sampler():
    """keras-hub's `GreedySampler` picking with `top_index`, so that the
    decoding loop converts to LiteRT with builtin ops only."""
    from keras_hub import samplers  # imported on first use: it loads tensorflow_text

    class GreedySampler(samplers.GreedySampler):
        def get_next_token(self, probabilities):
            return top_index(probabilities)

    return GreedySampler()


def get_sampler(sampler, num_beams: int = 4, seed: int | None = None):
    """The sampler object for `sampler`, a name in `SAMPLER_NAMES` or a sampler object.

    "greedy", "top_k" (k=5) and "top_p" (p=0.9) are keras-hub's
    `GreedySampler` (see `greedy_sampler`), `TopKSampler` and `TopPSampler`
    (seeded with `seed`);
    "beam" is `BeamSampler(num_beams)`, tfbert's beam search with the
    length penalty. Any object called like a keras-hub sampler passes
    through, e.g. `keras_hub.samplers.TopKSampler(k=40, temperature=0.7)`.
    """
    if not isinstance(sampler, str):
        if not callable(sampler):
            raise ValueError(
                f"`sampler` must be one of {SAMPLER_NAMES} or a sampler object (e.g. "
                f"tfbert.models.BeamSampler or a keras_hub.samplers.Sampler); received "
                f"{sampler!r}."
            )
        return sampler
    if sampler not in SAMPLER_NAMES:
        raise ValueError(
            f"Unknown sampler={sampler!r}. Use one of {SAMPLER_NAMES} or pass a sampler "
            "object (tfbert.models.BeamSampler, keras_hub.samplers.*)."
        )
    if sampler == "beam":
        return BeamSampler(num_beams=num_beams)
    from keras_hub import samplers  # imported on first use: it loads tensorflow_text

    if sampler == "greedy":
        return greedy_sampler()
    if sampler == "top_k":
        return samplers.TopKSampler(k=5, seed=seed)
    return samplers.TopPSampler(p=0.9, seed=seed)
