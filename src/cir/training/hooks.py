"""Scoped hooks: every context manager removes its hooks in `finally`, so nothing leaks
when a forward or backward pass raises."""

from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def _scoped(handles: list):
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def record_outputs(modules: dict[str, nn.Module], store: dict, detach: bool = False):
    """`store[name]` = the module's latest output (first element if a tuple)."""

    def make(name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            store[name] = out.detach() if detach else out

        return hook

    handles = [m.register_forward_hook(make(n)) for n, m in modules.items()]
    with _scoped(handles):
        yield store


@contextlib.contextmanager
def capture_acts_and_grads(modules: dict[str, nn.Module], acts: dict, grads: dict):
    """For each module: `acts[name]` = its input (detached), `grads[name]` = d loss / d output
    once backward has run. Both (B, T, d)."""

    def make(name):
        def pre_hook(module, args):
            acts[name] = args[0].detach()

        def hook(module, args, output):
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach()))

        return pre_hook, hook

    handles = []
    for name, module in modules.items():
        pre_hook, hook = make(name)
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    with _scoped(handles):
        yield acts, grads


@contextlib.contextmanager
def activations_require_grad(model: nn.Module):
    """Let gradients flow through activations while every weight is frozen: backward then
    computes d loss / d activations only, skipping the weight-gradient products that CIR
    replaces with its own collapsed update."""
    embeddings = model.get_input_embeddings()
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    handle = embeddings.register_forward_hook(lambda m, a, out: out.requires_grad_(True))
    try:
        yield
    finally:
        handle.remove()
        for p, flag in frozen:
            p.requires_grad_(flag)
