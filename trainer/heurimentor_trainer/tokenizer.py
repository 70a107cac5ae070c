"""Bilingual (English + Chinese) byte-level BPE tokenizer training, as in the Aquila2 report.

The training corpus is sampled to a configured EN:ZH ratio (1:1 by default, measured in UTF-8
bytes, which is what a byte-level BPE sees); the rarer language is used whole and the other is
down-sampled, never repeated. A held-out slice of each language is kept out of training and used
to report characters per token, the number that says how well the vocabulary fits each language.

Corpus files: ``.jsonl`` (one JSON object per line with a ``text`` field) or plain text (one
document per non-empty line). The result is one ``tokenizer.json`` (loadable by ``tokenizers``
and by ``transformers.PreTrainedTokenizerFast``) plus ``tokenizer_report.json``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2, as in Llama-format configs (bos 1, eos 2)
DEFAULT_VOCAB_SIZE = 100_000
TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "tokenizer_report.json"
SAMPLE_CORPUS = Path(__file__).parent / "sample_corpus"

# GPT-4-style pre-tokenisation, plus a rule that keeps runs of Han characters apart from Latin
# words and punctuation, and digits in groups of at most three.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"| ?\p{Han}+"
    r"|[^\r\n\p{L}\p{N}]?[^\s\p{N}\p{P}\p{S}\p{Han}]+"
    r"|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)


class TokenizerTrainingError(ValueError):
    """Inputs that cannot train a tokenizer; the message names the file or option."""


@dataclass(frozen=True)
class TokenizerReport:
    vocab_size: int  # tokens in the trained vocabulary, special tokens included
    requested_vocab_size: int
    en_zh_ratio: tuple[float, float]  # requested
    train_bytes: dict[str, int]  # achieved, per language
    train_documents: dict[str, int]
    heldout_documents: dict[str, int]
    chars_per_token: dict[str, float]  # on held-out text, per language


def parse_ratio(text: str) -> tuple[float, float]:
    """``"1:1"`` -> (1.0, 1.0); both parts positive."""
    try:
        en, zh = (float(part) for part in text.split(":"))
    except ValueError as e:
        raise TokenizerTrainingError(f"ratio {text!r} is not of the form EN:ZH, e.g. 1:1 or 3:2") from e
    if en <= 0 or zh <= 0:
        raise TokenizerTrainingError(f"ratio {text!r}: both parts must be positive")
    return en, zh


def read_documents(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise TokenizerTrainingError(f"corpus file {path} does not exist")
    documents = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    text = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError) as e:
                    raise TokenizerTrainingError(f"{path}:{number}: not a JSON object with a 'text' field") from e
            else:
                text = line.rstrip("\n")
            if text.strip():
                documents.append(text)
    if not documents:
        raise TokenizerTrainingError(f"corpus file {path} holds no documents")
    return documents


def split_heldout(documents: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded shuffle, then the last ``fraction`` (at least one document) held out."""
    shuffled = list(documents)
    random.Random(seed).shuffle(shuffled)
    n_heldout = max(1, round(len(shuffled) * fraction)) if fraction > 0 else 0
    if n_heldout >= len(shuffled):
        raise TokenizerTrainingError(f"held-out fraction {fraction} leaves no training documents out of {len(shuffled)}")
    return shuffled[: len(shuffled) - n_heldout], shuffled[len(shuffled) - n_heldout :]


def sample_to_ratio(en: Sequence[str], zh: Sequence[str], ratio: tuple[float, float], seed: int) -> tuple[list[str], list[str]]:
    """Down-sample one language so the UTF-8 byte totals follow ``ratio`` (no document repeated)."""
    en_bytes, zh_bytes = (sum(len(d.encode()) for d in docs) for docs in (en, zh))
    # The budget the limiting language allows the other one.
    en_budget = min(en_bytes, zh_bytes * ratio[0] / ratio[1])
    zh_budget = min(zh_bytes, en_bytes * ratio[1] / ratio[0])
    rng = random.Random(seed)
    return _take_bytes(en, en_budget, rng), _take_bytes(zh, zh_budget, rng)


def _take_bytes(documents: Sequence[str], budget: float, rng: random.Random) -> list[str]:
    order = list(documents)
    rng.shuffle(order)
    taken, total = [], 0
    for doc in order:
        size = len(doc.encode())
        if total + size > budget and taken:
            # Take the document that lands closest to the budget, then stop.
            if budget - total > total + size - budget:
                taken.append(doc)
            break
        taken.append(doc)
        total += size
    return taken


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def chars_per_token(tokenizer, documents: Sequence[str]) -> float:
    encodings = tokenizer.encode_batch(list(documents), add_special_tokens=False)
    tokens = sum(len(e.ids) for e in encodings)
    return sum(len(d) for d in documents) / max(tokens, 1)


def train_tokenizer(
    en_files: Sequence[str | Path],
    zh_files: Sequence[str | Path],
    output_dir: str | Path,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    ratio: tuple[float, float] = (1.0, 1.0),
    heldout_fraction: float = 0.05,
    min_frequency: int = 2,
    seed: int = 0,
) -> TokenizerReport:
    """Train, save ``tokenizer.json`` + report into ``output_dir``, and return the report.

    ``vocab_size`` counts BPE tokens (the 256 byte symbols included); the special tokens come on
    top, so the 100,000 default gives 100,003 ids, which the model pads to 100,008.
    """
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < 257:
        raise TokenizerTrainingError(f"vocab_size={vocab_size} is too small: byte-level BPE needs at least 257 tokens")
    if not 0 <= heldout_fraction < 1:
        raise TokenizerTrainingError(f"heldout_fraction={heldout_fraction} must be in [0, 1)")
    if not en_files or not zh_files:
        raise TokenizerTrainingError("both English and Chinese corpus files are required (--en and --zh)")
    corpora = {lang: [d for f in files for d in read_documents(f)] for lang, files in (("en", en_files), ("zh", zh_files))}
    splits = {lang: split_heldout(docs, heldout_fraction, seed) for lang, docs in corpora.items()}
    en_train, zh_train = sample_to_ratio(splits["en"][0], splits["zh"][0], ratio, seed)
    train = {"en": en_train, "zh": zh_train}
    train_bytes = {lang: sum(len(d.encode()) for d in docs) for lang, docs in train.items()}
    logger.info("training tokenizer", extra={"vocab_size": vocab_size, "train_bytes": train_bytes})

    tokenizer = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(SPECIAL_TOKENS),
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def interleaved() -> Iterator[str]:
        mixed = en_train + zh_train
        random.Random(seed).shuffle(mixed)
        yield from mixed

    tokenizer.train_from_iterator(interleaved(), trainer=trainer, length=len(en_train) + len(zh_train))
    report = TokenizerReport(
        vocab_size=tokenizer.get_vocab_size(),
        requested_vocab_size=vocab_size,
        en_zh_ratio=ratio,
        train_bytes=train_bytes,
        train_documents={lang: len(docs) for lang, docs in train.items()},
        heldout_documents={lang: len(split[1]) for lang, split in splits.items()},
        chars_per_token={lang: round(chars_per_token(tokenizer, split[1]), 4) for lang, split in splits.items() if split[1]},
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(output_dir / TOKENIZER_FILE))
    (output_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n")
    # transformers' PreTrainedTokenizerFast reads these names from tokenizer_config.json.
    (output_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": BOS,
                "eos_token": EOS,
                "pad_token": PAD,
                "add_bos_token": False,
                "add_eos_token": False,
            },
            indent=2,
        )
        + "\n"
    )
    return report


def load_tokenizer(path: str | Path):
    """A trained tokenizer from its directory or its ``tokenizer.json``."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TokenizerTrainingError(f"no tokenizer at {path} (expected a directory with {TOKENIZER_FILE}, or the file)")
    return Tokenizer.from_file(str(file))


def model_vocab_size(tokenizer, multiple: int = 8) -> int:
    """The model's embedding rows for this tokenizer: its vocabulary padded for efficient matmuls."""
    return -(-tokenizer.get_vocab_size() // multiple) * multiple


def encode_files(tokenizer, files: Sequence[str | Path]) -> list[int]:
    """The documents of ``files`` as one token stream, each document followed by EOS."""
    eos = tokenizer.token_to_id(EOS)
    ids: list[int] = []
    for file in files:
        for encoding in tokenizer.encode_batch(read_documents(file), add_special_tokens=False):
            ids.extend(encoding.ids)
            ids.append(eos)
    return ids
