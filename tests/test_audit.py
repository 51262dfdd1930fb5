"""`cir audit`: a verdict with intervals on any unlearned model (tiny models; one end-to-end run
on the bundled model)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from cir.attacks import GRIDS, Quantization, Relearning
from cir.auditing import AuditSettings, audit
from cir.cli import main
from cir.data.synthetic import write_mcq
from cir.errors import InputError


@pytest.fixture
def quick_grid(monkeypatch):
    """A two-attack grid the tests can afford: relearning on T for one epoch, and 8-bit."""
    monkeypatch.setitem(GRIDS, "quick", (Relearning(lr=1e-3, epochs=1), Quantization(bits=8)))
    return "quick"


@pytest.fixture
def texts(people):
    return [s for item in people[60:80] for s in item.sentences()]


def test_a_model_audited_against_itself_reads_nothing_forgotten(taught, people, texts, quick_grid, tmp_path):
    model, tokenizer = taught
    same = copy.deepcopy(model)
    report = audit(model, same, tokenizer, people[:24], kept={"others": people[40:56]}, texts=texts,
                   settings=AuditSettings(attacks=quick_grid), out=tmp_path / "audit", progress=False)
    block = report["verdict"]
    assert "nothing forgotten at this size" in block["reads"] and block["as never learned"] is None
    low, high = block["change from the original"][1:]
    assert low <= 0 <= high
    assert block["kept sets"]["questions lost"] == 0 and block["kept sets"]["change"] == [0.0, 0.0, 0.0]
    assert block["text loss ratio"][0] == pytest.approx(1.0)
    written = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert written["verdict"] == json.loads(json.dumps(block))
    text = (tmp_path / "audit" / "report.md").read_text()
    assert text.startswith("# Audit\n\n- the worst attack: ") and (tmp_path / "audit" / "attacks.png").is_file()


def test_against_a_reference_the_residual_carries_its_interval_and_an_interrupted_audit_continues(
        taught, llama, people, texts, quick_grid, tmp_path, monkeypatch):
    """The reference (a model that never learned the facts) meets the same attacks; every row is
    journalled as it is made, so a second audit to the same directory attacks nothing again."""
    import cir.attacks.grids
    import cir.auditing

    model, tokenizer = taught
    unlearned = copy.deepcopy(model)
    with torch.no_grad():  # "unlearning": noise on the weights
        for p in unlearned.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.02)
    options = dict(reference=llama, kept={"others": people[40:56]}, texts=texts,
                   settings=AuditSettings(attacks=quick_grid), out=tmp_path / "audit", progress=False)
    first = audit(model, unlearned, tokenizer, people[:24], **options)
    residual = first["verdict"]["residual vs the reference"]
    assert residual[1] <= residual[0] <= residual[2] and first["verdict"]["reads"]
    assert set(first["reference"]) == {"before"} | {a.label for a in GRIDS[quick_grid]}

    def refuse(*args, **kwargs):
        raise AssertionError("a journalled row was measured again")

    monkeypatch.setattr(cir.attacks.grids, "run_attack", refuse)
    monkeypatch.setattr(cir.auditing, "measure", refuse)
    again = audit(model, unlearned, tokenizer, people[:24], **options)
    assert again["verdict"] == first["verdict"]
    # cut the journal after its first rows: only what is missing is made again
    journal = tmp_path / "audit" / "audit.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:4]) + "\n" + lines[4][:40])  # two models measured, one attack, a line cut
    monkeypatch.undo()
    monkeypatch.setitem(GRIDS, "quick", (Relearning(lr=1e-3, epochs=1), Quantization(bits=8)))
    made = []
    original_run = cir.attacks.grids.run_attack
    monkeypatch.setattr(cir.attacks.grids, "run_attack", lambda *a, **k: made.append(a[2].key) or original_run(*a, **k))
    resumed = audit(model, unlearned, tokenizer, people[:24], **options)
    assert len(made) == 3  # of four attack rows, the first was journalled: the rest are made again
    assert resumed["verdict"]["worst attack"] == first["verdict"]["worst attack"]



def test_two_references_give_the_noise_floor_and_cached_rows_are_not_made_again(
        taught, llama, people, texts, quick_grid, tmp_path, monkeypatch):
    """The demo's audit: the never-taught and the retain model meet the same attacks, the noise
    floor between them is read at the worst attack, the attacker's kept facts are not the read
    ones, and rows kept in the cache are read back, not made again: the references' by their
    fingerprint, the unlearned model's by every weight."""
    import cir.attacks.grids
    from cir.auditing import audit_rows

    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))  # the references' rows are kept here
    model, tokenizer = taught
    unlearned, retain = copy.deepcopy(model), copy.deepcopy(llama)
    with torch.no_grad():
        for p in retain.parameters():
            p.mul_(1.01)
    seen = []
    attack_texts = cir.attacks.grids.attack_texts
    monkeypatch.setattr(cir.attacks.grids, "attack_texts",
                        lambda train, kept, general, seed: seen.append(list(kept)) or attack_texts(train, kept, general, seed))
    options = dict(references={"never_taught": llama, "retain": retain}, kept={"others": people[40:56]},
                   attacker_kept={"others": people[56:60]}, texts=texts[:8], attack_text=texts[8:],
                   settings=AuditSettings(attacks=quick_grid), progress=False, name="people", cache=True)
    rows, extra = audit_rows(model, unlearned, tokenizer, people[:24], **options)
    assert seen == [people[56:60]] and extra["forget_name"] == "people" and "people" in rows["before"].sets
    prob = extra["intervals"]["probability"]
    floor = prob["noise floor at the worst attack"]
    assert floor[1] <= floor[2] and set(extra) >= {"never_taught", "retain", "residual_never_taught", "residual_retain"}
    assert extra["text"]["texts"] == 8
    # the unlearned model is the original: its residual against each reference is the references' own difference
    assert prob["residual vs retain"]["before"] != prob["residual vs never_taught"]["before"]
    made = []
    run_attack = cir.attacks.grids.run_attack
    monkeypatch.setattr(cir.attacks.grids, "run_attack", lambda *a, **k: made.append(a[0]) or run_attack(*a, **k))
    again_rows, again = audit_rows(model, unlearned, tokenizer, people[:24], **options)
    assert made == []  # every model's rows came from the cache, the unlearned model's too
    label = GRIDS[quick_grid][0].label
    assert again["retain"][label].V.probs == extra["retain"][label].V.probs
    assert again_rows[label].V.probs == rows[label].V.probs
    # pooled over two seeds that are one seed twice, each interval's estimate is that seed's own; the
    # unlearned model is the original: the drop is before minus the worst attack's, which relearning
    # raises, so nothing was dropped
    from cir.auditing import pooled_intervals

    both = pooled_intervals([(rows, extra), (again_rows, again)])
    assert both["residual"].estimate == pytest.approx(prob["residual vs retain at the worst attack"][0])
    assert both["noise floor"].estimate == pytest.approx(floor[0])
    assert both["drop"].estimate == pytest.approx(both["before"].estimate - both["after the worst attack"].estimate)
    assert both["drop"].estimate <= 0
    with torch.no_grad():  # one weight changed: another unlearned model, attacked again; the references are not
        next(unlearned.parameters()).view(-1)[0] += 1e-3
    audit_rows(model, unlearned, tokenizer, people[:24], **options)
    assert made and all(m is unlearned for m in made)


def test_an_update_to_weights_the_fingerprint_does_not_sample_is_another_audit(taught):
    """The journal's key reads every weight: a model changed in one weight of one layer is not
    resumed from the journal of the model before the change."""
    from cir.data.general import fingerprint
    from cir.models import weights_digest

    model, _ = taught
    changed = copy.deepcopy(model)
    name, param = list(changed.named_parameters())[1]  # a tensor the fingerprint does not sample
    with torch.no_grad():
        param.view(-1)[-1] += 1e-3
    assert fingerprint(changed) == fingerprint(model)
    assert weights_digest(changed) != weights_digest(model)
    assert weights_digest(copy.deepcopy(model)) == weights_digest(model)


def test_models_of_two_architectures_or_tokenizers_are_refused_in_one_line(taught_dir, model_dir, tmp_path, people,
                                                                          tokenizer, gpt2, capsys):
    facts = tmp_path / "facts.jsonl"
    write_mcq(people[:12], facts)
    other = tmp_path / "gpt2"
    gpt2.save_pretrained(other)
    tokenizer.save_pretrained(other)
    capsys.readouterr()
    assert main(["audit", "--original", str(taught_dir), "--unlearned", str(other), "--forget", str(facts),
                 "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not of one architecture" in err[0]
    renamed = tmp_path / "renamed"
    shutil.copytree(taught_dir, renamed)
    changed = copy.deepcopy(tokenizer)
    changed.add_tokens(["zqxjv"])
    changed.save_pretrained(renamed)
    capsys.readouterr()
    assert main(["audit", "--original", str(taught_dir), "--unlearned", str(renamed), "--forget", str(facts),
                 "--out", str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different tokenizers" in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_command_prints_the_verdict_first(taught_dir, people, tmp_path, quick_grid, capsys, monkeypatch):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    facts, kept, text = tmp_path / "facts.jsonl", tmp_path / "kept.jsonl", tmp_path / "text.txt"
    write_mcq(people[:24], facts)
    write_mcq(people[40:56], kept)
    text.write_text("\n".join(s for item in people[60:80] for s in item.sentences()) + "\n")
    assert main(["audit", "--original", str(taught_dir), "--unlearned", str(taught_dir), "--forget", str(facts),
                 "--kept", str(kept), "--text", str(text), "--attacks", quick_grid, "--out", str(tmp_path / "audit"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("- the worst attack: ") and "nothing forgotten" in printed[1]
    assert (tmp_path / "audit" / "report.md").is_file()


@pytest.mark.real_model
@pytest.mark.parametrize("method", ["gradient_difference", "cir"])
def test_the_bundled_model_unlearned_by_a_method_is_audited_end_to_end(method, tmp_path, quick_grid, capsys):
    """`cir unlearn --audit` on twelve capitals: the verdict's last lines say what the audit read,
    and report.md holds every row with its interval."""
    from cir.data import load_mcq

    facts, kept, text = tmp_path / "capitals.jsonl", tmp_path / "languages.jsonl", tmp_path / "text.txt"
    write_mcq(load_mcq("capitals")[:12], facts)
    write_mcq(load_mcq("languages")[1::4], kept)
    text.write_text("\n".join(s for item in load_mcq("science") for s in item.sentences()) + "\n")
    out = tmp_path / method
    assert main(["unlearn", "--forget", str(facts), "--retain-mcq", str(kept), "--retain", str(text),
                 "--method", method, "--set", "max_epochs=1", "--set", "budget=0.05", "--out", str(out), "--quiet",
                 "--audit", quick_grid]) == 0
    printed = capsys.readouterr().out.splitlines()
    at = printed.index(f"audit ({out}/audit/report.md):")
    assert printed[at + 1].startswith("- the worst attack: ") and "against the original model" in printed[at + 2]
    report = json.loads((out / "audit" / "report.json").read_text())
    assert set(report["rows"]) == {"before", "after unlearning"} | {a.label for a in GRIDS[quick_grid]}
    # the audit read the run's own model: V in cloze moved where the run kept an unlearned epoch
    kept_epoch = json.loads((out / "result.json").read_text())["kept_epoch"]
    before, after = (report["rows"][k]["V"]["probability"] for k in ("before", "after unlearning"))
    assert (after != before) == (kept_epoch > 0)
    assert "| after unlearning |" in (out / "audit" / "report.md").read_text()


def test_a_grid_that_trains_on_kept_facts_needs_a_kept_set_and_says_so_before_measuring(taught, people, texts,
                                                                                       monkeypatch):
    import cir.auditing

    monkeypatch.setitem(GRIDS, "kept", (Relearning(data="kept", lr=1e-3, epochs=1),))
    monkeypatch.setattr(cir.auditing, "measure", lambda *a, **k: pytest.fail("measured before refusing"))
    model, tokenizer = taught
    with pytest.raises(InputError, match="nothing to train on"):
        audit(model, model, tokenizer, people[:24], texts=texts, settings=AuditSettings(attacks="kept"),
              progress=False)


def test_another_reference_is_another_audit_and_a_foreign_directory_is_refused(taught, llama, people, texts,
                                                                               quick_grid, tmp_path, capsys):
    from cir.auditing import AuditJournal

    model, tokenizer = taught
    common = dict(texts=texts, settings=AuditSettings(attacks=quick_grid), out=tmp_path / "audit", progress=False)
    first = audit(model, model, tokenizer, people[:24], reference=llama, **common)
    journal = (tmp_path / "audit" / AuditJournal.FILENAME).read_text().splitlines()[0]
    other = copy.deepcopy(llama)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    second = audit(model, model, tokenizer, people[:24], reference=other, **common)
    assert (tmp_path / "audit" / AuditJournal.FILENAME).read_text().splitlines()[0] != journal  # measured anew
    assert first["reference"]["before"] != second["reference"]["before"]
    foreign = tmp_path / "run"
    foreign.mkdir()
    (foreign / "report.md").write_text("a run's own report\n")
    assert main(["audit", "--original", str(tmp_path), "--unlearned", str(tmp_path), "--forget", "capitals",
                 "--out", str(foreign), "--quiet"]) == 2
    assert "holds no audit to continue" in capsys.readouterr().err
    assert (foreign / "report.md").read_text() == "a run's own report\n"


def test_the_verdict_reads_never_learned_only_inside_the_margin(people):
    from cir.auditing import NEVER_LEARNED_MARGIN, audit_verdict
    from cir.evaluation.statistics import Interval

    def block(residual):
        intervals = {"probability": {"worst probe": {"before": [0.9, 0.8, 1.0], "after unlearning": [0.3, 0.2, 0.4]},
                                     "residual vs retain at the worst attack": residual},
                     "accuracy": {}, "kept sets' change": {}}
        return audit_verdict({}, {"intervals": intervals, "headline": {"worst_attack": None},
                                  "text": {"loss_ratio": [1.0, 1.0, 1.0]}})

    assert block([0.0, -0.05, 0.05])["as never learned"] is True
    wide = block([0.0, -0.25, 0.25])
    assert wide["as never learned"] is None and "undecided at this size" in wide["reads"]
    assert block([0.3, 0.2, 0.4])["as never learned"] is False
    assert Interval(0, -NEVER_LEARNED_MARGIN, NEVER_LEARNED_MARGIN).half_width == pytest.approx(0.1)


def test_each_texts_loss_is_the_same_read_in_batches_or_one_by_one(taught, texts):
    """The text-loss ratio's interval resamples per-text losses: batching them changes nothing."""
    from cir.evaluation.scoring import text_loss, text_losses

    model, tokenizer = taught
    batched, single = text_losses(model, tokenizer, texts), text_losses(model, tokenizer, texts, batch_size=1)
    assert batched == pytest.approx(single, rel=1e-4)
    tokens = sum(len(tokenizer(t)["input_ids"]) - 1 for t in texts)
    assert sum(batched) / tokens == pytest.approx(text_loss(model, tokenizer, texts), rel=1e-4)
