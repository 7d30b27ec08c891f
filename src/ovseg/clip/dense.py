"""Per-patch and per-mask CLIP features from one ViT pass: training-free methods that use the masks.

Why: CLIP's class token describes the whole image and its last block mixes every patch
with every other, so per-patch features localise poorly. Training-free fixes change only
how the last block attends (no weights change):

* ``identity`` — the value path alone (MaskCLIP): each patch keeps its own value.
* ``clearclip`` — attention from q·qᵀ (ClearCLIP, Lan et al. 2024).
* ``naclip`` — attention from k·kᵀ plus a Gaussian bias over the patch grid, std 5 patches
  (NACLIP, Hajimiri et al. 2025).
* ``mask`` — ordinary q·kᵀ attention restricted to patch pairs that share a candidate mask;
  patches in no mask attend to themselves (the scope restriction of CorrCLIP, Zhang et al. 2025).

Every variant drops the last block's residual and MLP, then applies ``ln_post`` and the
projection. Attention runs over the patch tokens (the class token takes no part).

Per-mask class tokens (CorrCLIP): one extra token per candidate, starting as the class
token, that in every layer attends only to itself and to its mask's patches. Patch tokens
never attend to them, so the patches' computation is the ordinary forward pass and every
mask token can be computed on its own: here, layer by layer against the stored patch
states, in chunks, so hundreds of candidates cost one ViT pass plus small attentions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DENSE_ATTENTIONS = ("identity", "clearclip", "naclip", "mask")
NACLIP_STD = 5.0  # patches


def embed_patches(visual: torch.nn.Module, pixels: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(1, 1 + rows*cols, width) tokens after patch embedding, class token, positions and ``ln_pre``."""
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + interpolated_pos_embed(visual, rows, cols).to(x.dtype)
    return visual.ln_pre(x)


def interpolated_pos_embed(visual: torch.nn.Module, rows: int, cols: int) -> torch.Tensor:
    """The positional embedding resized (bicubic) to a ``rows`` x ``cols`` patch grid."""
    pos = visual.positional_embedding
    cls_pos, grid_pos = pos[:1], pos[1:]
    old_rows, old_cols = visual.grid_size
    if (old_rows, old_cols) == (rows, cols):
        return pos
    grid = grid_pos.reshape(1, old_rows, old_cols, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(rows * cols, -1).to(pos.dtype)
    return torch.cat([cls_pos, grid], 0)


def run_blocks(visual: torch.nn.Module, x: torch.Tensor, blocks) -> list[torch.Tensor]:
    """Apply ``blocks``; returns the input of every block and the final output (batch first)."""
    batch_first = getattr(visual.transformer, "batch_first", True)
    states = [x]
    for block in blocks:
        y = block(x if batch_first else x.transpose(0, 1))
        x = y if batch_first else y.transpose(0, 1)
        states.append(x)
    return states


def _projections(block, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (heads, L, head_dim) of ``y`` (L, width) with the block's own in-projection."""
    attn = block.attn
    width = y.shape[-1]
    heads = attn.num_heads
    bias = attn.in_proj_bias
    q, k, v = (
        F.linear(
            y,
            attn.in_proj_weight[i * width : (i + 1) * width],
            None if bias is None else bias[i * width : (i + 1) * width],
        )
        for i in range(3)
    )
    return tuple(t.reshape(t.shape[0], heads, width // heads).transpose(0, 1) for t in (q, k, v))


def _neighbourhood_bias(rows: int, cols: int, std: float, device, dtype) -> torch.Tensor:
    """(P, P) Gaussian of the grid distance between patches, added to the attention logits (NACLIP)."""
    yy, xx = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    coords = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1).to(dtype)
    distance2 = torch.cdist(coords, coords) ** 2
    return torch.exp(-distance2 / (2 * std**2))


def shared_mask_scope(membership: torch.Tensor) -> torch.Tensor:
    """(P, P) bool: patch i may attend to patch j when some mask holds both, or i == j."""
    member = membership.float()
    scope = (member.T @ member) > 0
    return scope | torch.eye(scope.shape[0], dtype=torch.bool, device=scope.device)


def last_block_patch_features(
    visual: torch.nn.Module,
    x: torch.Tensor,
    rows: int,
    cols: int,
    attention: str,
    membership: torch.Tensor | None = None,
) -> torch.Tensor:
    """(rows, cols, D) unit-norm patch features from the last block with ``attention`` (see module doc).

    ``x`` is the input of the last block, (1, 1 + P, width); ``membership`` (K, P) bool says
    which patches each candidate mask holds (needed by ``mask``).
    """
    block = visual.transformer.resblocks[-1]
    y = block.ln_1(x[0, 1:])  # patch tokens only
    attn = block.attn
    width = y.shape[-1]
    if attention == "identity":
        bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
        out = F.linear(y, attn.in_proj_weight[2 * width :], bias)
    else:
        q, k, v = _projections(block, y)
        scale = 1.0 / math.sqrt(q.shape[-1])
        if attention == "clearclip":
            logits = (q @ q.transpose(1, 2)) * scale
        elif attention == "naclip":
            logits = (k @ k.transpose(1, 2)) * scale + _neighbourhood_bias(rows, cols, NACLIP_STD, y.device, y.dtype)
        elif attention == "mask":
            if membership is None:
                raise ValueError("mask attention needs the candidates' patch membership")
            logits = (q @ k.transpose(1, 2)) * scale
            logits = logits.masked_fill(~shared_mask_scope(membership), float("-inf"))
        else:
            raise ValueError(f"unknown dense attention {attention!r}")
        out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, width)
    out = block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    feats = visual.ln_post(out) @ visual.proj
    return F.normalize(feats.float(), dim=-1).reshape(rows, cols, -1)


def mask_token_features(
    visual: torch.nn.Module, states: list[torch.Tensor], membership: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """(K, D) unit-norm features of one class token per mask that attends only to itself and its patches.

    ``states`` are the inputs of every block of the ordinary pass (from :func:`run_blocks`);
    ``membership`` (K, P) bool. Tokens start as the class token (its position included).
    """
    blocks = list(visual.transformer.resblocks)
    out = []
    for start in range(0, membership.shape[0], chunk):
        member = membership[start : start + chunk]
        tokens = states[0][0, :1].expand(member.shape[0], -1).clone()  # (k, width)
        for block, state in zip(blocks, states[:-1], strict=True):
            tokens = _mask_token_block(block, tokens, state[0, 1:], member)
        feats = visual.ln_post(tokens) @ visual.proj
        out.append(F.normalize(feats.float(), dim=-1))
    return torch.cat(out) if out else torch.zeros((0, visual.proj.shape[1]))


def _mask_token_block(block, tokens: torch.Tensor, patches: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """One residual block for mask tokens: attention over {itself} ∪ {its patches}, then the MLP."""
    attn = block.attn
    width = tokens.shape[-1]
    q_t, k_t, v_t = _projections(block, block.ln_1(tokens))  # (h, k, d)
    _, k_p, v_p = _projections(block, block.ln_1(patches))  # (h, P, d)
    scale = 1.0 / math.sqrt(q_t.shape[-1])
    own = (q_t * k_t).sum(-1, keepdim=True) * scale  # (h, k, 1)
    to_patches = (q_t @ k_p.transpose(1, 2)) * scale  # (h, k, P)
    to_patches = to_patches.masked_fill(~member.unsqueeze(0), float("-inf"))
    weights = torch.cat([own, to_patches], -1).softmax(-1)
    mixed = weights[..., :1] * v_t + weights[..., 1:] @ v_p  # (h, k, d)
    mixed = mixed.transpose(0, 1).reshape(-1, width)
    tokens = tokens + block.ls_1(F.linear(mixed, attn.out_proj.weight, attn.out_proj.bias))
    return tokens + block.ls_2(block.mlp(block.ln_2(tokens)))


def patch_membership(masks: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(K, rows*cols) bool: the patches each (K, H, W) mask covers at least half of (at least its best one)."""
    if masks.shape[0] == 0:
        return torch.zeros((0, rows * cols), dtype=torch.bool, device=masks.device)
    cover = F.interpolate(masks.float().unsqueeze(1), size=(rows, cols), mode="area").flatten(1)
    member = cover >= 0.5
    best = cover.argmax(1)
    member[torch.arange(len(member), device=member.device), best] |= cover[torch.arange(len(cover)), best] > 0
    return member
