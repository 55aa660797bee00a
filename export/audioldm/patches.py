"""Every change the AudioLDM components need to trace into a static graph, in one place, each with its reason.

Both patches keep the eager maths unchanged: parity against the unpatched eager model is checked after export.
"""
from __future__ import annotations

import contextlib

import paddle


@contextlib.contextmanager
def unet_upsample_size_always_forwarded():
    """Trace the UNet with `forward_upsample_size=True` on every path.

    `UNet2DConditionModel.forward` decides with `any(s % up_factor != 0 for s in sample.shape[-2:])`, a Python
    bool over tensor dims, which static graphs cannot evaluate. Forwarding the skip connection's size to every
    up-sampler is what eager does for latent heights that are not a multiple of the up-sampling factor, and
    gives the same result as a plain 2x nearest resize when they are; so the graph serves every audio length.
    The module's only `any(` call is that check; it sees this one during tracing alone.
    """
    from ppdiffusers.models import unet_2d_condition

    unet_2d_condition.any = lambda _dims: True
    try:
        yield
    finally:
        del unet_2d_condition.any


class _GroupNormOver3D(paddle.nn.Layer):
    """GroupNorm on [batch, channels, length] run as 4-D: paddle2onnx converts group_norm on 4-D input only."""

    def __init__(self, norm: paddle.nn.GroupNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        return self.norm(x.unsqueeze(-1)).squeeze(-1)


def vae_for_export(vae):
    """The VAE's attention blocks normalise [batch, channels, tokens] tensors: run their GroupNorm as 4-D."""
    from ppdiffusers.models.attention_processor import Attention

    for layer in vae.sublayers():
        if isinstance(layer, Attention) and isinstance(layer.group_norm, paddle.nn.GroupNorm):
            layer.group_norm = _GroupNormOver3D(layer.group_norm)
    return vae
