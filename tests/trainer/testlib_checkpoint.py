"""A tiny model trained for a few seconds on the bundled EN/ZH sample corpus, saved in HF format."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from heurimentor_trainer.hf import save_hf_checkpoint
from heurimentor_trainer.model import ModelArgs, build_model
from heurimentor_trainer.tokenizer import SAMPLE_CORPUS, encode_files, load_tokenizer, model_vocab_size, train_tokenizer

CORPUS = [SAMPLE_CORPUS / "en.txt", SAMPLE_CORPUS / "zh.txt"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a busy 2-core machine two OpenMP threads that
    wait for each other make each step about ten times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield


def train_tiny_checkpoint(root: Path, *, steps: int = 60, seq_len: int = 64) -> tuple[Path, Path]:
    """(checkpoint dir, tokenizer dir). Linear in-features are multiples of 128, the quantization group."""
    train_tokenizer([CORPUS[0]], [CORPUS[1]], root / "tokenizer", vocab_size=600)
    tokenizer = load_tokenizer(root / "tokenizer")
    tokens = torch.tensor(encode_files(tokenizer, CORPUS))
    args = ModelArgs(
        dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=256, vocab_size=model_vocab_size(tokenizer), max_seq_len=seq_len
    )
    model = build_model(args, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, len(tokens) - seq_len - 1, (8,), generator=generator)
        batch = torch.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()])
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_hf_checkpoint(model, root / "checkpoint")
    return root / "checkpoint", root / "tokenizer"


def shared_tiny_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny checkpoint, trained once per test session however many modules ask for it."""
    root = tmp_path_factory.getbasetemp() / "tiny-checkpoint"
    if not (root / "checkpoint" / "config.json").exists():
        root.mkdir(exist_ok=True)
        with single_thread():
            train_tiny_checkpoint(root, steps=40)
    return root / "checkpoint", root / "tokenizer"
