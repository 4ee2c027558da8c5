"""Torch modules at a model's real dimensions, random weights, for timing (not for accuracy).

Pre-norm ViT / Whisper encoder blocks, the connectors (linear, MLP, pixel
shuffle + MLP, Q-Former), decoder layers (GQA attention with rotary
embeddings over a preallocated KV cache, gated MLP or top-k routed MoE with
shared experts), the LM head, and the whole model stacked for the composed
check. Shapes: activations are (sequences, tokens, hidden).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from profiles.components import AudioEncoder, Connector, Decoder, VisionEncoder
from profiles.params import QFORMER_FFN_MULT

INIT_STD = 0.02  # small random weights keep activations finite through many layers
ROPE_THETA = 10_000.0


def init_weights(module: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter with N(0, INIT_STD) from a seeded generator (same seed, same weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * INIT_STD
            param.copy_(noise.to(param.dtype))
    return module


class Mlp(nn.Module):
    """Feed-forward block: GELU (up, down) or gated SiLU (gate+up fused, down)."""

    def __init__(self, hidden: int, intermediate: int, gated: bool, bias: bool) -> None:
        super().__init__()
        self.gated = gated
        self.up = nn.Linear(hidden, intermediate * (2 if gated else 1), bias=bias)
        self.down = nn.Linear(intermediate, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, hidden) -> (…, hidden)."""
        up = self.up(x)
        if self.gated:
            gate, value = up.chunk(2, dim=-1)
            return self.down(F.silu(gate) * value)
        return self.down(F.gelu(up, approximate="tanh"))


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional transformer block (SigLIP/CLIP/InternViT, Whisper encoder)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, gated: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = Mlp(hidden, intermediate, gated, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(sequences, seq_len, hidden) -> same; full attention within each sequence."""
        sequences, seq_len, hidden = x.shape
        qkv = self.qkv(self.norm1(x)).view(sequences, seq_len, 3, self.heads, hidden // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).reshape(sequences, seq_len, hidden))
        return x + self.mlp(self.norm2(x))


def vision_block(encoder: VisionEncoder) -> EncoderBlock:
    """One block of ``encoder``."""
    return EncoderBlock(encoder.hidden, encoder.heads, encoder.intermediate, encoder.mlp == "swiglu")


def audio_block(encoder: AudioEncoder) -> EncoderBlock:
    """One block of a Whisper-style audio encoder."""
    return EncoderBlock(encoder.hidden, encoder.heads, encoder.intermediate, gated=False)


class MergeMlpConnector(nn.Module):
    """Linear / MLP connector after folding ``merge`` x ``merge`` patches into one token (pixel shuffle)."""

    def __init__(self, connector: Connector, vision_hidden: int, decoder_hidden: int) -> None:
        super().__init__()
        self.merge = connector.merge
        width_in = vision_hidden * connector.merge**2
        layers: list[nn.Module] = [nn.Linear(width_in, decoder_hidden)]
        if connector.kind != "linear":
            layers += [nn.GELU(), nn.Linear(decoder_hidden, decoder_hidden)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(sequences, patches, vision_hidden) -> (sequences, patches / merge^2, decoder_hidden)."""
        return self.mlp(self.shuffle(x))

    def shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """Space-to-depth on the square patch grid (a grouped reshape when the grid is not square)."""
        sequences, patches, hidden = x.shape
        merge = self.merge
        side = math.isqrt(patches)
        if merge == 1:
            return x
        if side * side != patches or side % merge:
            return x.reshape(sequences, patches // merge**2, merge**2 * hidden)
        grid = x.view(sequences, side // merge, merge, side // merge, merge, hidden)
        return grid.permute(0, 1, 3, 2, 4, 5).reshape(sequences, patches // merge**2, merge**2 * hidden)


class QFormerLayer(nn.Module):
    """BERT-style block over the queries, cross-attending to the image on even layers (BLIP-2)."""

    def __init__(self, hidden: int, vision_hidden: int, cross: bool) -> None:
        super().__init__()
        heads = max(1, hidden // 64)
        self.self_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.cross_attn = (nn.MultiheadAttention(hidden, heads, kdim=vision_hidden, vdim=vision_hidden,
                                                 batch_first=True) if cross else None)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(3))
        self.mlp = Mlp(hidden, QFORMER_FFN_MULT * hidden, gated=False, bias=True)

    def forward(self, queries: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(sequences, queries, hidden), (sequences, patches, vision_hidden) -> queries."""
        queries = self.norms[0](queries + self.self_attn(queries, queries, queries, need_weights=False)[0])
        if self.cross_attn is not None:
            crossed = self.cross_attn(queries, image, image, need_weights=False)[0]
            queries = self.norms[1](queries + crossed)
        return self.norms[2](queries + self.mlp(queries))


class QFormerConnector(nn.Module):
    """Learned queries through ``qformer_layers`` blocks, then a projection to the LLM width."""

    def __init__(self, connector: Connector, vision_hidden: int, decoder_hidden: int) -> None:
        super().__init__()
        hidden = connector.qformer_hidden or 0
        self.queries = nn.Parameter(torch.zeros(connector.queries or 0, hidden))
        self.layers = nn.ModuleList(QFormerLayer(hidden, vision_hidden, cross=i % 2 == 0)
                                    for i in range(connector.qformer_layers or 0))
        self.out = nn.Linear(hidden, decoder_hidden)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(sequences, patches, vision_hidden) -> (sequences, queries, decoder_hidden)."""
        queries = self.queries.unsqueeze(0).expand(image.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, image)
        return self.out(queries)


def connector_module(connector: Connector, vision_hidden: int, decoder_hidden: int) -> nn.Module:
    """The torch module of ``connector``."""
    if connector.kind == "qformer":
        return QFormerConnector(connector, vision_hidden, decoder_hidden)
    return MergeMlpConnector(connector, vision_hidden, decoder_hidden)


class KvCache:
    """Preallocated K and V of one layer: (sequences, kv_heads, capacity, head_dim)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys = keys
        self.values = values

    @classmethod
    def empty(cls, decoder: Decoder, sequences: int, capacity: int, like: torch.Tensor) -> "KvCache":
        """Zeros of ``like``'s dtype and device."""
        shape = (sequences, decoder.kv_heads, capacity, decoder.head_dim)
        return cls(like.new_zeros(shape), like.new_zeros(shape))


def rotary(positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embeddings for ``positions``: (tokens, head_dim)."""
    inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, head_dim, 2, device=positions.device) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate half of the head dimensions (Llama/SmolLM convention)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-second, first], dim=-1) * sin.to(x.dtype)


class MoeFfn(nn.Module):
    """Top-k routed experts (softmax router, renormalised weights) plus always-on shared experts."""

    def __init__(self, decoder: Decoder, experts: int) -> None:
        super().__init__()
        moe = decoder.moe
        assert moe is not None
        self.top_k = min(moe.top_k, experts)
        self.router = nn.Linear(decoder.hidden, experts, bias=False)
        self.gate_up = nn.Parameter(torch.zeros(experts, decoder.hidden, 2 * moe.expert_intermediate))
        self.down = nn.Parameter(torch.zeros(experts, moe.expert_intermediate, decoder.hidden))
        self.shared = (Mlp(decoder.hidden, moe.shared_experts * moe.shared_intermediate, gated=True, bias=False)
                       if moe.shared_experts else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, hidden) -> (…, hidden)."""
        flat = x.reshape(-1, x.shape[-1])
        weights, chosen = torch.topk(torch.softmax(self.router(flat).float(), dim=-1), self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for expert in chosen.unique().tolist():
            rows, slot = (chosen == expert).nonzero(as_tuple=True)
            gate, value = (flat[rows] @ self.gate_up[expert]).chunk(2, dim=-1)
            out.index_add_(0, rows, (F.silu(gate) * value) @ self.down[expert] * weights[rows, slot, None])
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view_as(x)


class DecoderLayer(nn.Module):
    """Pre-norm GQA decoder layer writing its K/V into a ``KvCache`` at ``start``."""

    def __init__(self, decoder: Decoder, dense_ffn: bool = False, experts: int | None = None) -> None:
        super().__init__()
        self.decoder = decoder
        q_width, kv_width = decoder.heads * decoder.head_dim, decoder.kv_heads * decoder.head_dim
        self.norm1 = nn.RMSNorm(decoder.hidden)
        self.qkv = nn.Linear(decoder.hidden, q_width + 2 * kv_width, bias=False)
        self.o = nn.Linear(q_width, decoder.hidden, bias=False)
        self.norm2 = nn.RMSNorm(decoder.hidden)
        if decoder.moe is None or dense_ffn:
            self.ffn: nn.Module = Mlp(decoder.hidden, decoder.intermediate, decoder.mlp == "swiglu", bias=False)
        else:
            self.ffn = MoeFfn(decoder, experts or decoder.moe.experts)

    def forward(self, x: torch.Tensor, cache: KvCache, start: int) -> torch.Tensor:
        """(sequences, tokens, hidden) after ``start`` cached tokens per sequence -> same."""
        dec = self.decoder
        sequences, tokens, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(
            [dec.heads * dec.head_dim, dec.kv_heads * dec.head_dim, dec.kv_heads * dec.head_dim], dim=-1)
        q = q.view(sequences, tokens, dec.heads, dec.head_dim).transpose(1, 2)
        k = k.view(sequences, tokens, dec.kv_heads, dec.head_dim).transpose(1, 2)
        v = v.view(sequences, tokens, dec.kv_heads, dec.head_dim).transpose(1, 2)
        cos, sin = rotary(torch.arange(start, start + tokens, device=x.device), dec.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        end = start + tokens
        cache.keys[:, :, start:end] = k
        cache.values[:, :, start:end] = v
        attended = _causal_attention(q, cache.keys[:, :, :end], cache.values[:, :, :end], start)
        x = x + self.o(attended.transpose(1, 2).reshape(sequences, tokens, -1))
        return x + self.ffn(self.norm2(x))


def _causal_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int) -> torch.Tensor:
    """New queries at positions start.. attend to every key up to their own position (GQA)."""
    tokens = q.shape[2]
    if tokens == 1:
        return F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)
    if start == 0:
        return F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
    query_pos = torch.arange(start, start + tokens, device=q.device)[:, None]
    key_pos = torch.arange(start + tokens, device=q.device)[None, :]
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=key_pos <= query_pos, enable_gqa=True)


class LmHead(nn.Module):
    """Final RMSNorm and the vocabulary projection."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(decoder.hidden)
        self.proj = nn.Linear(decoder.hidden, decoder.vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, hidden) -> (rows, vocab) logits."""
        return self.proj(self.norm(x))
