"""TSM delivery (real TSM app started late / down), weight statistics, validation loss, downstream evals."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import torch
import torch.nn.functional as F

from heurimentor.contracts.metrics import EvalResult, StepPoint
from heurimentor_trainer.data import SourceSet
from heurimentor_trainer.evals import MultipleChoiceTask, build_downstream, validation_loss
from heurimentor_trainer.metrics import TSMSender, WeightStats
from heurimentor_trainer.model import build_model
from heurimentor_trainer.presets import get_preset
from tests.trainer.testlib import free_port, make_sources, serve_app, tsm_app

NO_AUTOCAST = torch.autocast("cpu", enabled=False)


def _point(step: int, rank: int = 0) -> StepPoint:
    return StepPoint(
        step=step,
        rank=rank,
        time=1_800_000_000.0 + step,
        tokens_seen=step * 100,
        scalars={"loss": 10.0 - step / 10, "step_time_seconds": 0.1},
        source_losses={"en": 9.0},
    )


def _loss_curve(url: str, job: str) -> dict[int, float]:
    response = httpx.get(f"{url}/v1/jobs/{job}/curves/scalar/loss")
    assert response.status_code == 200, response.text
    return {p["step"]: p["value"] for p in response.json()["points"]}


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_metrics_buffer_while_the_tsm_is_down_and_arrive_once_it_starts(tmp_path):
    port = free_port()
    sender = TSMSender(f"http://127.0.0.1:{port}", "late-job", 0, flush_interval=0.05)
    try:
        for step in range(1, 21):
            sender.add_point(_point(step))
        sender.add_eval(EvalResult(step=20, kind="val_loss", name="en", value=8.5, time=1_800_000_020.0))
        _wait_for(lambda: not sender.reachable)
        assert sender.buffered_batches >= 1 and sender.delivered_batches == 0
        for step in range(21, 31):  # training goes on while the TSM is down
            sender.add_point(_point(step))
        with serve_app(tsm_app(tmp_path), port=port) as url:
            _wait_for(lambda: sender.buffered_batches == 0 and sender.reachable, timeout=60)
            assert _loss_curve(url, "late-job") == {s: pytest.approx(10.0 - s / 10) for s in range(1, 31)}
            val = httpx.get(f"{url}/v1/jobs/late-job/curves/val_loss/en").json()["points"]
            assert [(p["step"], p["value"]) for p in val] == [(20, 8.5)]
    finally:
        sender.close(timeout=0.1)


def test_undelivered_batches_are_spooled_at_exit_and_resent_by_the_next_start(tmp_path):
    port = free_port()
    spool = tmp_path / "spool"
    sender = TSMSender(f"http://127.0.0.1:{port}", "spool-job", 1, flush_interval=0.05, spool_dir=str(spool))
    for step in range(1, 6):
        sender.add_point(_point(step, rank=1))
    sender.close(timeout=0.3)
    spooled = list(spool.glob("spool-job/r1-*.json"))  # one folder per job: another job's files never match
    assert spooled and sum(len(json.loads(p.read_text())["points"]) for p in spooled) == 5
    with serve_app(tsm_app(tmp_path), port=port) as url:
        restarted = TSMSender(url, "spool-job", 0, flush_interval=0.05, spool_dir=str(spool))
        restarted.add_point(_point(6))
        _wait_for(lambda: restarted.buffered_batches == 0 and restarted.delivered_batches >= 2)
        restarted.close()
        assert not [p for p in spool.rglob("*") if p.is_file()]
        curve = httpx.get(f"{url}/v1/jobs/spool-job/curves/scalar/loss", params={"rank": 1}).json()["points"]
        assert [p["step"] for p in curve] == [1, 2, 3, 4, 5]


def test_a_refused_token_keeps_the_metrics_until_the_right_one_delivers_them(tmp_path):
    spool = tmp_path / "spool"
    with serve_app(tsm_app(tmp_path, auth_token="tsm-secret")) as url:
        refused = TSMSender(url, "auth-job", 0, flush_interval=0.05, spool_dir=str(spool), token="stale-secret")
        for step in range(1, 6):
            refused.add_point(_point(step))
        _wait_for(lambda: not refused.reachable)
        assert refused.delivered_batches == 0 and refused.buffered_batches >= 1  # kept, not dropped as invalid
        refused.close(timeout=0.3)
        assert list(spool.glob("auth-job/r0-*.json"))
        fixed = TSMSender(url, "auth-job", 0, flush_interval=0.05, spool_dir=str(spool), token="tsm-secret")
        _wait_for(lambda: fixed.buffered_batches == 0 and fixed.delivered_batches >= 1)
        fixed.close()
        assert sorted(_loss_curve(url, "auth-job")) == [1, 2, 3, 4, 5]


def test_weight_stats_match_a_direct_computation():
    model = build_model(get_preset("debug").model, seed=0)
    stats = WeightStats(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 512, (2, 8))).float().mean().backward()
    stats.before_update()
    optimizer.step()
    rows = {row.layer: row for row in stats.after_update()}
    assert set(rows) == {"tok_embeddings", "layers.0", "layers.1", "norm", "output"}
    names = [n for n in before if n.startswith("layers.1.")]
    flat = torch.cat([dict(model.named_parameters())[n].detach().flatten() for n in names])
    update = torch.cat([(dict(model.named_parameters())[n].detach() - before[n]).flatten() for n in names])
    assert rows["layers.1"].weight_std == pytest.approx(flat.std().item(), rel=1e-4)
    assert rows["layers.1"].update_norm == pytest.approx(update.norm().item(), rel=1e-4)
    assert rows["layers.1"].update_norm > 0


def test_validation_loss_per_source_matches_a_direct_computation(tmp_path):
    sources = SourceSet(make_sources(tmp_path / "shards"), 16, vocab_size=512, val_samples_per_source=3)
    model = build_model(get_preset("debug").model, seed=0)
    losses = validation_loss(model, sources, max_samples=3, micro_batch=2, device=torch.device("cpu"), autocast=NO_AUTOCAST)
    assert set(losses) == {"en", "zh", "code"}
    s = sources.names.index("zh")
    tokens = torch.stack([torch.from_numpy(sources.sample(s, i)) for i in sources.val_indices(s)])
    expected = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).item()
    assert losses["zh"] == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def counting_model():
    """A debug model trained briefly on counting sequences (next token = previous + 1)."""
    torch.manual_seed(0)
    model = build_model(get_preset("debug").model, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        starts = torch.randint(0, 400, (8, 1))
        tokens = starts + torch.arange(13)
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def _write_task(path, answers_right: bool):
    rows = []
    for start in (20, 100, 250, 333):
        context = list(range(start, start + 6))
        right, wrong = [start + 6, start + 7], [start + 40, start + 3]
        choices = [right, wrong] if answers_right else [wrong, right]
        rows.append({"context_ids": context, "choices_ids": choices, "answer": 0})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_multiple_choice_scoring_picks_the_likeliest_continuation(tmp_path, counting_model):
    right = MultipleChoiceTask(str(_write_task(tmp_path / "right.jsonl", True)))
    wrong = MultipleChoiceTask(str(_write_task(tmp_path / "wrong.jsonl", False)), name="flipped")
    cpu = torch.device("cpu")
    assert right.evaluate(counting_model, device=cpu, autocast=NO_AUTOCAST) == 1.0
    assert wrong.evaluate(counting_model, device=cpu, autocast=NO_AUTOCAST) == 0.0
    assert (right.name, wrong.name) == ("right", "flipped")


def make_constant_task(value: float, name: str = "constant"):
    """A plug-in task factory, referenced as ``test_trainer_metrics:make_constant_task``."""

    class Constant:
        def __init__(self):
            self.name = name

        def evaluate(self, model, *, device, autocast):
            return value

    return Constant()


def test_downstream_tasks_are_pluggable_and_bad_specs_are_refused(tmp_path):
    task = build_downstream({"kind": "tests.trainer.test_trainer_metrics:make_constant_task", "value": 0.25})
    assert task.evaluate(None, device=None, autocast=None) == 0.25
    with pytest.raises(ValueError, match="unknown"):
        build_downstream({"kind": "no_such_kind", "path": "x"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context_ids": [1, 2], "choices_ids": [[3]], "answer": 0}\n{"context_ids": [1], "choices_ids": [[3]], "answer": 4}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*answer"):
        build_downstream({"kind": "multiple_choice", "path": str(bad)})
    text = tmp_path / "text.jsonl"
    text.write_text('{"context": "hello", "choices": ["a"], "answer": 0}\n')
    with pytest.raises(ValueError, match="tokenizer"):
        MultipleChoiceTask(str(text))
