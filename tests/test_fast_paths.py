"""Every shortcut that saves arithmetic gives what the plain computation gives: the output head
run at the positions a loss reads against the whole head, continuations sharing their
context's forward pass against one sequence per pair, and whole runs against the plain path."""

from __future__ import annotations

import pytest
import torch

import cir.evaluation.scoring
import cir.methods.losses
from cir import unlearn
from cir.training.batches import forget_batches
from cir.evaluation.scoring import continuation_logprobs
from cir.methods.losses import FORGET_LOSSES


def plain_logits_at(model, batch, positions):
    """The reference: the whole model, every position through the head, then those that predict
    an answer token (position t predicts token t + 1), found here, not from `positions`."""
    return model(**batch.inputs(), use_cache=False).logits[:, :-1][batch.answer_mask[:, 1:]].float()


def plain_continuation_logprobs(model, tokenizer, pairs, first_token=None):
    scores = []
    for i, (context, continuation) in enumerate(pairs):
        ctx = tokenizer(context)["input_ids"]
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        cont = cont[:1] if first_token and first_token[i] else cont
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
        scores.append(sum(float(logp[len(ctx) + k - 1, token]) for k, token in enumerate(cont)))
    return scores


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_context_scores_equal_one_sequence_per_pair(arch, request, tokenizer, people):
    model = request.getfixturevalue(arch)
    pairs = [(f"Question: {item.question}\nAnswer:", " " + choice) for item in people[:12] for choice in item.choices]
    pairs += [("Answer:", " Paris"), ("Answer:", " x"), ("The capital of France is", " Ljubljana")]
    lengths = {len(tokenizer(c, add_special_tokens=False)["input_ids"]) for _, c in pairs}
    assert 1 in lengths and max(lengths) > 1  # both kinds of continuation are exercised
    fast = continuation_logprobs(model, tokenizer, pairs, batch_size=7)
    plain = plain_continuation_logprobs(model, tokenizer, pairs)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-4, atol=1e-4)
    # the recall probe's scoring: the first token only, for the marked pairs, in the same pass
    marked = [i % 3 == 0 for i in range(len(pairs))]
    fast = continuation_logprobs(model, tokenizer, pairs, batch_size=7, first_token=marked)
    plain = plain_continuation_logprobs(model, tokenizer, pairs, first_token=marked)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-4, atol=1e-4)
    multi = [i for i, (_, c) in enumerate(pairs) if marked[i] and len(tokenizer(c, add_special_tokens=False)["input_ids"]) > 1]
    assert multi and all(fast[i] > plain_continuation_logprobs(model, tokenizer, [pairs[i]])[0] for i in multi)


@pytest.mark.parametrize("loss_name", ["true_logit", "neg_cross_entropy", "saturating_logit", "bounded_logit",
                                       "saturating_sequence"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_head_at_answer_positions_gives_the_whole_heads_loss_and_gradient(arch, loss_name, request, tokenizer,
                                                                           people, monkeypatch):
    model = request.getfixturevalue(arch)
    batch = forget_batches(tokenizer, people[:10], batch_size=16)[0]
    loss = FORGET_LOSSES[loss_name](model, [1])
    reference = loss.reference(model, batch)
    results = {}
    for path in ("fast", "plain"):
        if path == "plain":
            monkeypatch.setattr(cir.methods.losses, "logits_at", plain_logits_at)
        model.zero_grad()
        value = loss(model, batch, reference)
        value.backward()
        results[path] = (value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(results["fast"][0], results["plain"][0], rtol=1e-5, atol=1e-6)
    assert results["fast"][1].keys() == results["plain"][1].keys() and results["fast"][1]
    for name, grad in results["plain"][1].items():
        torch.testing.assert_close(results["fast"][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("method", ["cir", "npo"])
def test_two_epochs_give_the_plain_paths_weights(method, taught_dir, people, monkeypatch):
    """Whole runs (statistics, collapse, updates, retain steps, the stop rule's evaluations):
    the same weights with every shortcut as with the plain computation."""
    from cir.models import load_model

    weights, accuracies = {}, {}
    for path in ("fast", "plain"):
        if path == "plain":
            monkeypatch.setattr(cir.methods.losses, "logits_at", plain_logits_at)
            monkeypatch.setattr(cir.evaluation.scoring, "continuation_logprobs",
                                lambda model, tokenizer, pairs, batch_size=64, first_token=None:
                                plain_continuation_logprobs(model, tokenizer, pairs, first_token))
        model, tokenizer = load_model(str(taught_dir))
        result = unlearn(model, tokenizer, people[:40], method=method, max_epochs=2, budget=10.0, watch={},
                         retain=[item.sentences()[0] for item in people[40:]],
                         heldout=[item.sentences()[0] for item in people[40:]], progress=False,
                         forget_loss="true_logit" if method == "cir" else "npo")
        assert result.kept_epoch == 2
        weights[path] = {n: p.detach().clone() for n, p in model.named_parameters()}
        accuracies[path] = [row["forget_accuracy"] for row in result.metrics]
    original, _ = load_model(str(taught_dir))
    moved = [n for n, p in original.named_parameters() if not torch.equal(p, weights["fast"][n])]
    assert moved  # the runs changed the model
    for name, value in weights["plain"].items():
        torch.testing.assert_close(weights["fast"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert accuracies["fast"] == accuracies["plain"]
