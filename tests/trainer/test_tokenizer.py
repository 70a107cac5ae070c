"""Bilingual byte-level BPE training on the bundled EN/ZH sample corpus (small vocabulary, fast)."""

from __future__ import annotations

import json

import pytest

from heurimentor_trainer.tokenizer import (
    REPORT_FILE,
    SAMPLE_CORPUS,
    TOKENIZER_FILE,
    TokenizerTrainingError,
    load_tokenizer,
    model_vocab_size,
    parse_ratio,
    sample_to_ratio,
    train_tokenizer,
)

EN, ZH = SAMPLE_CORPUS / "en.txt", SAMPLE_CORPUS / "zh.txt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return out, train_tokenizer([EN], [ZH], out, vocab_size=2000, heldout_fraction=0.1)


def test_trains_specials_and_reports_chars_per_token(trained):
    out, report = trained
    tokenizer = load_tokenizer(out)
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<s>", "</s>")] == [0, 1, 2]
    assert 257 + 3 <= report.vocab_size == tokenizer.get_vocab_size() <= 2003
    assert model_vocab_size(tokenizer) % 8 == 0 and model_vocab_size(tokenizer) >= report.vocab_size
    # English merges learned on this corpus make held-out English clearly better than bytes.
    assert report.chars_per_token["en"] > 1.8
    assert report.chars_per_token["zh"] > 1 / 3  # above one token per UTF-8 byte
    assert report.heldout_documents == {"en": 6, "zh": 6}
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["chars_per_token"] == report.chars_per_token


def test_round_trips_any_text_without_unknown_tokens(trained):
    tokenizer = load_tokenizer(trained[0] / TOKENIZER_FILE)
    for text in ["The river rose quickly.", "连续下了三天雨，河水很快上涨。", "mixed 混合 text 😀 ½ Ωμέγα\n\ttabs"]:
        encoding = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(encoding.ids) == text
        assert 0 not in encoding.ids  # byte-level: nothing falls back to a special token


def test_same_seed_same_tokenizer(trained, tmp_path):
    train_tokenizer([EN], [ZH], tmp_path, vocab_size=2000, heldout_fraction=0.1)
    assert (tmp_path / TOKENIZER_FILE).read_text() == (trained[0] / TOKENIZER_FILE).read_text()


@pytest.mark.parametrize("ratio", [(1.0, 1.0), (1.0, 2.0), (3.0, 1.0)])
def test_sampling_follows_the_byte_ratio_without_repeats(ratio):
    en = [line for line in EN.read_text().splitlines() if line]
    zh = [line for line in ZH.read_text().splitlines() if line]
    en_s, zh_s = sample_to_ratio(en, zh, ratio, seed=3)
    en_bytes, zh_bytes = (sum(len(d.encode()) for d in docs) for docs in (en_s, zh_s))
    assert en_bytes / zh_bytes == pytest.approx(ratio[0] / ratio[1], rel=0.05)
    assert len(set(en_s)) == len(en_s) and len(set(zh_s)) == len(zh_s)
    # The limiting language is used (almost) whole.
    assert max(en_bytes / sum(len(d.encode()) for d in en), zh_bytes / sum(len(d.encode()) for d in zh)) > 0.97


def test_jsonl_corpus(tmp_path):
    en = tmp_path / "en.jsonl"
    en.write_text("".join(json.dumps({"text": line}) + "\n" for line in EN.read_text().splitlines()))
    report = train_tokenizer([en], [ZH], tmp_path / "out", vocab_size=400, ratio=(2.0, 1.0))
    assert report.train_bytes["en"] / report.train_bytes["zh"] == pytest.approx(2.0, rel=0.05)


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(TokenizerTrainingError, match="ratio '1-1' is not of the form EN:ZH"):
        parse_ratio("1-1")
    with pytest.raises(TokenizerTrainingError, match="both parts must be positive"):
        parse_ratio("1:0")
    with pytest.raises(TokenizerTrainingError, match=f"corpus file {tmp_path / 'missing.txt'} does not exist"):
        train_tokenizer([tmp_path / "missing.txt"], [ZH], tmp_path / "out", vocab_size=400)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "no text field"}\n')
    with pytest.raises(TokenizerTrainingError, match="bad.jsonl:1: not a JSON object with a 'text' field"):
        train_tokenizer([bad], [ZH], tmp_path / "out", vocab_size=400)
    with pytest.raises(TokenizerTrainingError, match="vocab_size=100 is too small"):
        train_tokenizer([EN], [ZH], tmp_path / "out", vocab_size=100)
    assert not (tmp_path / "out").exists()  # nothing was written for refused inputs
