"""Every registered unlearning method on the tiny taught model (parametrised over the registry,
so methods added later are covered), hand-computed maths of NPO, SimNPO, RMU and GU, and GU
switched on for several methods."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from cir.training.batches import Batch, forget_batches, text_batches
from cir.methods import get_method, method_names
from cir.methods.base import RetainSubspace


def make(name, model, tokenizer, people, **options):
    forget, keep = people[:20], people[20:]  # 4 people forgotten (60 sentences), 12 kept
    retain_text = [s for item in keep for s in item.sentences()][:48]
    cls = get_method(name)
    return cls(model, tokenizer, cls.Config(**options), forget_batches(tokenizer, forget, batch_size=32),
               text_batches(tokenizer, retain_text, batch_size=16))


def snapshot(method):
    return {n: p.detach().clone() for n, p in method.trained_parameters().items()}


def unlearn_three_epochs(method):
    before_params, before = snapshot(method), method.forget_loss_value()
    method.prepare()
    losses = [method.run_epoch(epoch)["forget_loss"] for epoch in (1, 2, 3)]
    return before_params, before, losses, method.forget_loss_value()


@pytest.mark.parametrize("name", method_names())
def test_every_method_unlearns(name, taught, people):
    model, tokenizer = taught
    torch.manual_seed(0)
    method = make(name, model, tokenizer, people)
    assert method.reference.strip() and "\n" not in method.reference
    before_params, before, losses, after = unlearn_three_epochs(method)
    assert all(math.isfinite(v) for v in losses + [before, after])
    assert after < before, f"{name}: forget loss {before:.4f} -> {after:.4f}"
    params = method.trained_parameters()
    assert any(not torch.equal(params[n], p) for n, p in before_params.items())
    assert all(torch.isfinite(p).all() for p in params.values())


@pytest.mark.parametrize("name", ["gradient_difference", "npo", "cir"])
def test_gu_works_with_gradient_methods(name, taught, people):
    model, tokenizer = taught
    torch.manual_seed(0)
    method = make(name, model, tokenizer, people, gu=True, gu_history=3)
    before_params, before, losses, after = unlearn_three_epochs(method)
    assert 1 <= len(method.retain_subspace.vectors) <= 3
    assert all(math.isfinite(v) for v in losses) and after < before
    assert any(not torch.equal(method.trained_parameters()[n], p) for n, p in before_params.items())


def test_gu_update_is_orthogonal_to_the_stored_retain_gradients(taught, people):
    model, tokenizer = taught
    method = make("gradient_difference", model, tokenizer, people, gu=True, gu_history=4, retain_every=1)
    method.run_epoch(1)  # a retain step after every forget step
    stored = torch.stack(list(method.retain_subspace.vectors))
    assert stored.shape[0] == min(4, len(method.forget)) >= 2
    _, grads = method.forget_gradients(0)
    projected = method.retain_subspace.project(grads)
    flat, flat_projected = RetainSubspace.flatten(grads), RetainSubspace.flatten(projected)
    cosines = stored @ flat_projected / (stored.norm(dim=1) * flat_projected.norm())
    assert cosines.abs().max() < 1e-4
    assert (stored @ flat / (stored.norm(dim=1) * flat.norm())).abs().max() > 1e-3  # there was something to remove
    # what stays is flat minus its least-squares fit on the retain gradients
    coef = torch.linalg.lstsq(stored.T.double(), flat.double()[:, None]).solution
    torch.testing.assert_close(flat_projected.double(), flat.double() - (stored.T.double() @ coef)[:, 0],
                               atol=1e-5, rtol=1e-4)
    # the step applies exactly the projected update at norm `unlearning_rate`
    before = snapshot(method)
    method.step(grads)
    rate = method.config.unlearning_rate / flat_projected.norm()
    for name, p in method.trained_parameters().items():
        torch.testing.assert_close(before[name] - p, projected[name] * rate, atol=1e-6, rtol=1e-4)


def _toy_batch_and_model():
    """One sentence of 3 tokens, tokens 1 and 2 the answer, with p(1 | 0) = 1/2 and p(2 | 0 1) = 1/4."""
    probs = torch.tensor([[[0.25, 0.5, 0.25], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]])
    batch = Batch(input_ids=torch.tensor([[0, 1, 2]]), attention_mask=torch.ones(1, 3, dtype=torch.long),
                  token_mask=torch.tensor([[True, True, True]]), answer_mask=torch.tensor([[False, True, True]]))
    return batch, _ToyModel(probs.log())


class _ToyModel:
    """Fixed logits, as a whole model's output and as a body whose head is the identity (the
    losses send only the positions they read through the head)."""

    base_model_prefix = "body"
    config = SimpleNamespace()

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __call__(self, **inputs):
        return SimpleNamespace(logits=self.logits)

    def body(self, **inputs):
        return SimpleNamespace(last_hidden_state=self.logits)

    def get_output_embeddings(self):
        return lambda hidden: hidden


def test_npo_and_simnpo_losses_by_hand():
    from cir.methods.losses import SaturatingSequence
    from cir.methods.simnpo import SimNPOLoss

    batch, model = _toy_batch_and_model()
    # log pi = log(1/8); with log pi_ref = log(1/2) the ratio is 1/4:
    # -(2/b) log sigmoid(-b log(1/4)) = (2/b) log(1 + 4^-b)
    beta = 0.1
    loss = SaturatingSequence(beta=beta)(model, batch, torch.tensor([math.log(0.5)]))
    assert float(loss) == pytest.approx((2 / beta) * math.log(1 + 4 ** -beta), rel=1e-5)
    # at the reference (ratio 1) the loss is (2/b) log 2, and its reference is log pi itself
    reference = SaturatingSequence(beta=beta).reference(model, batch)
    assert float(reference) == pytest.approx(math.log(1 / 8), rel=1e-5)
    assert float(SaturatingSequence(beta=beta)(model, batch, reference)) == pytest.approx((2 / beta) * math.log(2), rel=1e-5)
    # SimNPO: -(2/b) log sigmoid(-(b/2) log(1/8) - g), two answer tokens
    b, g = 2.5, 0.5
    expected = -(2 / b) * math.log(1 / (1 + math.exp(-(-(b / 2) * math.log(1 / 8) - g))))
    assert float(SimNPOLoss(b, g)(model, batch)) == pytest.approx(expected, rel=1e-5)


def test_rmu_target_is_the_steering_coefficient_times_a_unit_direction(taught, people):
    model, tokenizer = taught
    method = make("rmu", model, tokenizer, people, steering_coef=3.0)
    assert method.config.loss_layers == [method.config.layer]
    assert max(method.config.train_layers) == method.config.layer
    assert float(method.direction.norm()) == pytest.approx(1.0, rel=1e-6)
    assert float(method.forget_loss.target.norm()) == pytest.approx(3.0, rel=1e-6)
    torch.testing.assert_close(method.forget_loss.target, 3.0 * method.direction)
    # default: steering_scale x the mean norm of the original activations on the forget tokens
    default = make("rmu", model, tokenizer, people)
    with torch.no_grad():
        norms = torch.cat([h.norm(dim=-1) for b in default.forget
                           for h in default.forget_loss.outputs(model, b).values()])
    assert default.steering_coef == pytest.approx(5.0 * float(norms.mean()), rel=1e-5)
    assert float(default.forget_loss.target.norm()) == pytest.approx(default.steering_coef, rel=1e-5)


def test_configs_validate():
    with pytest.raises(ValueError, match="gu_history"):
        get_method("npo").Config(gu_history=0)
    with pytest.raises(ValueError, match="forget_loss"):
        get_method("npo").Config(forget_loss="true_logit")  # NPO's loss is its own
    with pytest.raises(ValueError, match="beta"):
        get_method("simnpo").Config(beta=0)
    with pytest.raises(ValueError, match="fraction"):
        get_method("shred").Config(fraction=0)
    assert get_method("mlp_breaking").Config().collapse == "none"
    assert get_method("mlp_breaking").Config().forget_loss == "mlp_breaking"
