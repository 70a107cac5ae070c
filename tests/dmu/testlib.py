"""Helpers of the DMU tests: a real uvicorn server on loopback, a tiny BPE tokenizer, corpora."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dmu_service.api.main import create_app
from dmu_service.config import Settings
from dmu_service.migrations import upgrade
from hack.testenv.asgi import serve_app

DATA = Path(__file__).parent / "data"
TOKEN = secrets.token_urlsafe(32)  # the admin token of the test servers: random, as production requires


def settings_for(url: str, data_dir: Path, **extra) -> Settings:
    """Production settings (the default) with reads opened, so tests read without a token unless they test that."""
    return Settings(
        **{
            "database_url": url,
            "data_dir": data_dir,
            "auth_token": TOKEN,
            "mixture_poll_interval_s": 0.1,
            "reads_require_auth": False,
            **extra,
        }
    )


@contextmanager
def live_server(settings: Settings, *, migrate: bool = True) -> Iterator[str]:
    """Serve a DMU app with uvicorn on a free loopback port; yields its base URL."""
    if migrate:
        upgrade(settings.sqlalchemy_url)
    with serve_app(create_app(settings), name="DMU") as url:
        yield url


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def add_sources(http: httpx.Client, *names: str, language: str = "en") -> None:
    for name in names:
        response = http.post("/sources", json={"name": name, "language": language}, headers=auth())
        assert response.status_code == 201, response.text


def train_tokenizer(path: Path, vocab_size: int = 400) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = sentences("en") + sentences("zh")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["[UNK]", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(path))
    return path


def sentences(language: str) -> list[str]:
    return [s for s in (DATA / f"{language}_sentences.txt").read_text().splitlines() if s.strip()]


def make_doc(language: str, seed: int, n_sentences: int = 12) -> str:
    """A document of sentences from the sample text, a few per paragraph."""
    pool = sentences(language)
    rng = random.Random(seed)
    picked = rng.sample(pool, min(n_sentences, len(pool)))
    sep = " " if language == "en" else ""
    return "\n\n".join(sep.join(picked[i : i + 3]) for i in range(0, len(picked), 3))
