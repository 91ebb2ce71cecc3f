"""Models with attention for the tests (importable as ``attention_models:FACTORY`` from the CLI)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: bert_small's shape: 2 layers, 4 heads of 16 (hidden 64), sequences of 16 tokens in the tests.
BERT_LAYERS, BERT_HEADS, BERT_HEAD_DIM = 2, 4, 16


def bert_small() -> nn.Module:
    """A small BERT from its config (no download): transformers' default attention, SDPA."""
    from transformers import AutoModel, BertConfig

    config = BertConfig(vocab_size=1000, hidden_size=BERT_HEADS * BERT_HEAD_DIM, num_hidden_layers=BERT_LAYERS,
                        num_attention_heads=BERT_HEADS, intermediate_size=128, max_position_embeddings=64)
    return AutoModel.from_config(config).eval()


class SelfAttention(nn.Module):
    """One self-attention layer over ``(batch, tokens, dim)``: ``F.scaled_dot_product_attention`` (with
    ``dropout`` passed to it even in eval, or a causal mask), or the same written out by hand (``manual``)."""

    def __init__(self, dim: int = 32, heads: int = 4, *, dropout: float = 0.0, causal: bool = False,
                 manual: bool = False) -> None:
        super().__init__()
        self.heads, self.dropout, self.causal, self.manual = heads, dropout, causal, manual
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.manual:  # torch.matmul and F.softmax: the spellings every counter sees (ptflops replaces these)
            attn = torch.matmul(q, k.transpose(-2, -1)) * (c // self.heads) ** -0.5
            out = torch.matmul(F.softmax(attn, dim=-1), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def sdpa() -> nn.Module:
    return SelfAttention().eval()


class BiasedAttention(nn.Module):
    """SDPA with an additive bias of ``rank`` dims (timm's TinyViT adds a ``(heads, n, n)`` bias to 4-D q), or
    with v of twice q's head size (``wide_v``)."""

    def __init__(self, rank: int = 3, wide_v: bool = False, dim: int = 32, heads: int = 4, tokens: int = 10) -> None:
        super().__init__()
        self.rank, self.wide_v, self.heads = rank, wide_v, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.register_buffer("bias", torch.randn(1, heads, tokens, tokens))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        v = torch.cat([v, v], -1) if self.wide_v else v
        mask = self.bias[(0,) * (4 - self.rank)]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
