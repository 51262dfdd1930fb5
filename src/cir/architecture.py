"""Finding decoder layers and MLP projections from a model's structure.

Supported families: Llama/Mistral/Qwen2/Gemma (`model.layers[i].mlp.{gate,up,down}_proj`),
GPT-NeoX (`gpt_neox.layers[i].mlp.dense_{h_to_4h,4h_to_h}`) and GPT-2
(`transformer.h[i].mlp.{c_fc,c_proj}`, Conv1D weights stored as (in, out)).
"""

from __future__ import annotations

import torch
from torch import nn

from cir.errors import InputError

# (path to the layer list, names of the MLP projections inside `layer.mlp`)
_FAMILIES = [
    ("model.layers", ("gate_proj", "up_proj", "down_proj")),
    ("model.layers", ("up_proj", "down_proj")),
    ("gpt_neox.layers", ("dense_h_to_4h", "dense_4h_to_h")),
    ("transformer.h", ("c_fc", "c_proj")),
]


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _family(model: nn.Module):
    for path, names in _FAMILIES:
        layers = _get(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) and hasattr(layers[0], "mlp"):
            if all(isinstance(getattr(layers[0].mlp, n, None), nn.Module) for n in names):
                return path, names
    raise InputError(
        f"unsupported architecture {type(model).__name__}: cannot find decoder layers with MLP projections "
        "(supported: Llama/Mistral/Qwen2/Gemma, GPT-NeoX, GPT-2)"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks, in order."""
    return _get(model, _family(model)[0])


def mlp_projections(model: nn.Module, layer_ids) -> dict[str, nn.Module]:
    """`{qualified name: module}` of every MLP projection in the given layers."""
    path, names = _family(model)
    layers = _get(model, path)
    modules = {}
    for i in layer_ids:
        if not 0 <= i < len(layers):
            raise InputError(f"layer {i} does not exist: the model has {len(layers)} layers (0-{len(layers) - 1})")
        for name in names:
            modules[f"{path}.{i}.mlp.{name}"] = getattr(layers[i].mlp, name)
    return modules


def mlp_of(model: nn.Module, layer_id: int) -> nn.Module:
    return decoder_layers(model)[layer_id].mlp


def is_transposed(module: nn.Module) -> bool:
    """GPT-2's Conv1D stores its weight as (in, out), the transpose of nn.Linear."""
    return type(module).__name__ == "Conv1D"


def weight_grad_from(module: nn.Module, grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_t g_t a_t^T in the layout of `module.weight`.  grads: (T, d_out), acts: (T, d_in)."""
    outer = torch.einsum("to,ti->oi", grads, acts)  # (d_out, d_in)
    return outer.T if is_transposed(module) else outer


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module, float | None]:
    """(the decoder body, returning hidden states; the output head; the final logit softcap or
    None): to send only some positions through a head that is a large share of the compute."""
    body = getattr(model, model.base_model_prefix)
    return body, model.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None)


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits (float32) from final hidden states: the head, and its softcap if any."""
    _, head, softcap = body_and_head(model)
    logits = head(hidden).float()
    return softcap * torch.tanh(logits / softcap) if softcap else logits


class _Stop(Exception):
    pass


def forward_until(model: nn.Module, last_layer: int, **inputs) -> None:
    """Run the forward pass through decoder layer `last_layer` and stop there.

    Nothing after the last layer a loss needs is computed (the paper trims the model the
    same way); results are read by hooks.
    """
    layers = decoder_layers(model)
    if last_layer >= len(layers) - 1:
        model(**inputs, use_cache=False)
        return

    def stop(module, args, output):
        raise _Stop

    handle = layers[last_layer].register_forward_hook(stop)
    try:
        model(**inputs, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
