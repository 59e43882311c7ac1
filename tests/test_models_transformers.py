"""The transformer-era families: parameter counts against the published numbers, shapes, and the parts that are
easy to get subtly wrong (Swin's shifted-window mask, FNet's DFT as matmuls, EANet's double normalisation)."""

import math

import pytest
import torch

from edge_sdk.models import create_model, get_model_card, list_models
from edge_sdk.models.eanet import ExternalAttention
from edge_sdk.models.fnet import FourierMixing, dft_matrices
from edge_sdk.models.gcvit import GlobalQueryGen
from edge_sdk.models.mae import sincos_pos_embed
from edge_sdk.models.swin import (
    SwinBlock,
    cyclic_shift,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

FAMILIES = ("vit*", "mae*", "swin*", "mixer*", "fnet*", "gmlp*", "eanet*", "perceiver*", "gcvit*")


def _fnet_params(dim=256, depth=4, ffn=256, patch=8, tokens=64, classes=100) -> int:
    """fnet_p8_64 by hand (no published count: the Keras example prints none): patch embedding (8*8*3 -> 256),
    positional embedding (64 x 256), per block two Dense 256 -> 256 and two LayerNorms, classifier 256 -> 100."""
    embed = patch * patch * 3 * dim + dim + tokens * dim
    block = (dim * ffn + ffn) + (ffn * dim + dim) + 2 * 2 * dim
    return embed + depth * block + dim * classes + classes


def _eanet_params(dim=64, mlp=64, coef=4, heads=4, depth=8, patch=2, tokens=256, classes=100) -> int:
    """eanet_p2_32 by hand (the Keras example says "0.3M"; the paper has no such model): Dense 2*2*3 -> 64 and a
    64-wide positional embedding per token; per block two LayerNorms, Dense 64 -> 256, M_k and M_v (16 -> 16 with
    biases, shared by the 16 heads), Dense 256 -> 64, MLP 64 -> 64 -> 64; classifier 64 -> 100."""
    inner, head_dim, memory = dim * coef, dim * coef // (heads * coef), dim // coef
    embed = patch * patch * 3 * dim + dim + tokens * dim
    attention = (dim * inner + inner) + (head_dim * memory + memory) + (memory * head_dim + head_dim) + (inner * dim + dim)
    block = 2 * 2 * dim + attention + (dim * mlp + mlp) + (mlp * dim + dim)
    return embed + depth * block + dim * classes + classes


def _perceiver_params(latents=256, dim=256, blocks=4, patch=2, tokens=1024, classes=100) -> int:
    """perceiver_p2_64 by hand (the Keras example prints no count): the latent array, Dense 2*2*3 -> 256 and a
    positional embedding per element; cross-attention: 3 LayerNorms, q / k / v Dense, the learned scalar scale,
    FFN 256 -> 256 -> 256; latent blocks: 2 LayerNorms, q / k / v / out Dense (8 heads of 32), the same FFN;
    classifier 256 -> GELU -> 256 -> 100."""
    linear = dim * dim + dim
    cross = 3 * 2 * dim + 3 * linear + 1 + 2 * linear
    block = 2 * 2 * dim + 4 * linear + 2 * linear
    return latents * dim + (patch * patch * 3 * dim + dim) + tokens * dim + cross + blocks * block + linear + dim * classes + classes


# name: published parameter count, to within 0.5 %
PUBLISHED = {
    # DeiT (Touvron et al. 2021) Table 1 rounds to 5M / 22M; the released checkpoints (deit_tiny_patch16_224,
    # deit_small_patch16_224 in facebookresearch/deit and timm) have 5,717,416 and 22,050,664 parameters
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    # ViT paper Table 1: ViT-Base 86M; the released B/16 ImageNet-1k classifier: 86,567,656 (timm: 86.6 M)
    "vit_base_patch16_224": 86_567_656,
    # MAE's fine-tuned ViT-B/16 (facebookresearch/mae models_vit.vit_base_patch16, global_pool): the same count,
    # fc_norm replacing the final norm (paper: ViT-B, 86M)
    "mae_vit_base_patch16_224": 86_567_656,
    # Swin paper Table 1: 28M / 50M / 88M; the official checkpoints (microsoft/Swin-Transformer, timm model
    # cards): 28.29M / 49.61M / 87.77M
    "swin_tiny_patch4_window7_224": 28.29e6,
    "swin_small_patch4_window7_224": 49.61e6,
    "swin_base_patch4_window7_224": 87.77e6,
    # MLP-Mixer Table 1: S/16 18M, B/16 59M; the official JAX checkpoints (google-research/vision_transformer,
    # timm mixer_b16_224 model card): 18.5M, 59.88M
    "mixer_s16_224": 18.53e6,
    "mixer_b16_224": 59.88e6,
    # gMLP Table 1: 6M / 20M / 73M; timm's gmlp_ti16_224 / gmlp_s16_224 / gmlp_b16_224 (the paper's
    # configurations): 5.87M / 19.42M / 73.08M
    "gmlp_ti16_224": 5.87e6,
    "gmlp_s16_224": 19.42e6,
    "gmlp_b16_224": 73.08e6,
    # GC ViT (NVlabs/GCVit README and paper Table 1: 12M / 20M / 28M); the official weights as counted by
    # keras_cv_attention_models (gcvit/__init__.py): 12.0M / 20.0M / 28.2M
    "gcvit_xxtiny": 12.0e6,
    "gcvit_xtiny": 20.0e6,
    "gcvit_tiny": 28.2e6,
    # no published counts for the Keras-example configurations: derived by hand above
    "fnet_p8_64": _fnet_params(),
    "eanet_p2_32": _eanet_params(),
    "perceiver_p2_64": _perceiver_params(),
}


def test_every_registered_variant_has_a_published_reference():
    assert sorted(n for pattern in FAMILIES for n in list_models(pattern)) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_match_the_published_numbers(name):
    card = get_model_card(name)
    assert abs(card.params - PUBLISHED[name]) / PUBLISHED[name] < 0.005, card.params


def test_hand_derived_counts_are_exact():
    assert get_model_card("fnet_p8_64").params == _fnet_params() == 621_924
    assert get_model_card("eanet_p2_32").params == _eanet_params() == 361_380
    assert get_model_card("perceiver_p2_64").params == _perceiver_params() == 2_336_101


def test_cards_name_their_paper_and_source():
    for name in PUBLISHED:
        card = get_model_card(name)
        assert card.paper and card.paper_url.startswith("https://arxiv.org/abs/") and card.description, name
    for name in ("fnet_p8_64", "eanet_p2_32", "perceiver_p2_64"):
        assert "keras.io/examples" in get_model_card(name).description


@pytest.mark.parametrize(
    "name, size",
    [
        ("vit_tiny_patch16_224", 64),
        ("mixer_s16_224", 64),
        ("gmlp_ti16_224", 64),
        ("fnet_p8_64", 32),
        ("eanet_p2_32", 16),
        ("perceiver_p2_64", 32),
        ("swin_tiny_patch4_window7_224", 224),  # windows of 7 tile no smaller input
        ("gcvit_xxtiny", 224),
    ],
)
def test_forward_with_other_classes_channels_and_size(name, size):
    model = create_model(name, num_classes=7, in_chans=1, img_size=size)
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)
    assert model.card.num_classes == 7 and model.card.input_size == (1, size, size)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "mixer_s16_224", "fnet_p8_64"])
def test_models_refuse_an_input_size_they_were_not_built_for(name):
    model = create_model(name, img_size=64)
    with pytest.raises(ValueError, match="img_size"):
        model(torch.randn(1, 3, 96, 96))


# ----- FNet -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens, dim", [(64, 256), (7, 12), (16, 5)])
def test_fourier_mixing_equals_the_real_part_of_fft2(tokens, dim):
    mixing = FourierMixing(tokens, dim).double()
    x = torch.randn(3, tokens, dim, dtype=torch.float64)
    torch.testing.assert_close(mixing(x), torch.fft.fft2(x).real, rtol=0, atol=1e-5 * tokens * dim ** 0.5)
    x32 = x.float()
    torch.testing.assert_close(FourierMixing(tokens, dim)(x32), torch.fft.fft2(x32).real, rtol=1e-4, atol=1e-3)


def test_dft_matrices_are_the_dft():
    cos, sin = dft_matrices(6)
    k = torch.arange(6.0)
    expected = torch.exp(-2j * math.pi * torch.outer(k, k) / 6)
    torch.testing.assert_close(torch.complex(cos, -sin), expected.to(torch.complex64))


# ----- Swin -----------------------------------------------------------------------------------


def test_cyclic_shift_equals_roll():
    x = torch.randn(2, 14, 21, 3)
    for shift in (-3, 3, 7, 0):
        assert torch.equal(cyclic_shift(x, shift), torch.roll(x, (shift, shift), dims=(1, 2)))


def test_window_partition_round_trips_and_groups_windows():
    x = torch.randn(2, 14, 21, 5)
    windows = window_partition(x, 7)
    assert windows.shape == (2 * 2 * 3, 49, 5)
    assert torch.equal(window_reverse(windows, 7, (14, 21)), x)
    # window 4 of image 1 = row-block 1, column-block 1
    assert torch.equal(windows[6 + 4], x[1, 7:14, 7:14].reshape(49, 5))


def test_relative_position_index_encodes_offsets():
    index = relative_position_index(3)  # tokens (row, col) in row-major order; table row (dy + 2) * 5 + (dx + 2)
    assert index.shape == (9, 9)
    assert index[0, 0] == index[4, 4] == 2 * 5 + 2  # no offset
    assert index[8, 0] == (2 + 2) * 5 + (2 + 2)  # token (2, 2) relative to (0, 0)
    assert index[0, 8] == 0


def _regions(size: int, window: int, shift: int) -> torch.Tensor:
    """Interval label per row / column after a shift, in image coordinates: [0, s), [s, s + w), ..., [H - w + s, H)."""
    return torch.tensor([0 if i < shift else 1 + (i - shift) // window for i in range(size)])


def test_shifted_mask_blocks_exactly_the_pairs_from_different_regions():
    mask = shifted_window_mask((14, 14), 7, 3)  # in the shifted (rolled) frame
    assert mask.shape == (4, 49, 49)
    rows = torch.arange(14)
    label = _regions(14, 7, 3)
    original = (rows + 3) % 14  # rolled row r holds image row r + s
    region = (label[original][:, None] * 100 + label[original][None, :])  # [14, 14] in the rolled frame
    regions = window_partition(region[None, :, :, None].float(), 7).squeeze(-1)
    expected = torch.where(regions[:, :, None] == regions[:, None, :], 0.0, -100.0)
    assert torch.equal(mask, expected)
    assert (mask[0] == 0).all(), "the top-left window holds one region: nothing masked"


def _dense_shifted_attention(block: SwinBlock, x: torch.Tensor, shift: int) -> torch.Tensor:
    """An independent reference for the block's attention branch: attention over all H*W tokens at once, allowed
    only between tokens of the same region of the shifted grid (in image coordinates, no roll), with the
    relative position bias of their offset."""
    b, h, w, c = x.shape
    attn = block.attn
    heads, hd, window = attn.num_heads, attn.head_dim, block.window
    y = block.norm1(x).reshape(b, h * w, c)
    q, k, v = attn.qkv(y).reshape(b, h * w, 3, heads, hd).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    region = _regions(h, window, shift)[rows] * 1000 + _regions(w, window, shift)[cols]
    allowed = region[:, None] == region[None, :]
    dy = rows[:, None] - rows[None, :] + window - 1
    dx = cols[:, None] - cols[None, :] + window - 1
    table = attn.relative_position_bias_table
    bias = table[(dy * (2 * window - 1) + dx).clamp(0, table.shape[0] - 1)].permute(2, 0, 1)
    scores = (scores + bias).masked_fill(~allowed, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, h * w, c)
    return attn.proj(out).reshape(b, h, w, c)


@pytest.mark.parametrize("shift", [0, 3])
def test_shifted_window_attention_equals_a_dense_masked_reference(shift):
    torch.manual_seed(0)
    block = SwinBlock(16, 2, (14, 14), window=7, shift=shift, mlp_ratio=2.0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)
        x = torch.randn(2, 14, 14, 16)
        y = block.norm1(x)
        windows = window_partition(cyclic_shift(y, -shift), 7)
        branch = cyclic_shift(window_reverse(block.attn(windows, block.attn_mask), 7, (14, 14)), shift)
        torch.testing.assert_close(branch, _dense_shifted_attention(block, x, shift), rtol=1e-5, atol=1e-5)
        assert torch.allclose(block(x), x + branch + block.mlp(block.norm2(x + branch)), atol=1e-5)


def test_shifted_block_mixes_tokens_only_within_regions():
    """Perturb one input token: exactly the tokens of its region change, across the unshifted windows' border.

    With a 14x14 map, windows of 7 and a shift of 3, the regions are rows / columns [0, 3), [3, 10), [10, 14).
    """
    torch.manual_seed(0)
    block = SwinBlock(8, 2, (14, 14), window=7, shift=3, mlp_ratio=2.0).eval()
    x = torch.randn(1, 14, 14, 8)
    label = _regions(14, 7, 3)
    with torch.no_grad():
        base = block(x)
        for (i, j), size in {(5, 5): 7 * 7, (0, 0): 3 * 3, (13, 2): 4 * 3, (9, 12): 7 * 4}.items():
            x2 = x.clone()
            x2[0, i, j] += torch.randn(8)  # not a constant: LayerNorm would remove it
            changed = (block(x2) - base).abs().amax(-1)[0] > 1e-6
            expected = (label[:, None] == label[i]) & (label[None, :] == label[j])
            assert torch.equal(changed, expected) and int(expected.sum()) == size, (i, j)


# ----- EANet, MAE, GC ViT ---------------------------------------------------------------------


def test_external_attention_normalises_over_tokens_then_memory_units():
    torch.manual_seed(0)
    ea = ExternalAttention(64, 4, 4)
    x = torch.randn(2, 16, 10, 16)  # [B, heads, N, head_dim]
    attn = ea.attention(x)
    softmax = ea.memory_k(x).softmax(dim=2)
    torch.testing.assert_close(attn, softmax / softmax.sum(-1, keepdim=True))
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 16, 10))
    assert ea.num_heads == 16 and ea.memory_k.out_features == 16


def test_mae_positional_embedding_is_the_2d_sincos_table():
    table = sincos_pos_embed(8, (2, 3))
    assert table.shape == (1, 1 + 6, 8) and torch.equal(table[0, 0], torch.zeros(8))
    # token (row 1, column 2): channels 0-1 sin(col * omega), 2-3 cos(col * omega), 4-7 the same for the row
    omega = torch.tensor([1.0, 0.01])
    expected = torch.cat([(2 * omega).sin(), (2 * omega).cos(), omega.sin(), omega.cos()])
    torch.testing.assert_close(table[0, 1 + 1 * 3 + 2], expected)
    model = create_model("mae_vit_base_patch16_224", num_classes=7, img_size=32)
    torch.testing.assert_close(model.pos_embed.data, sincos_pos_embed(768, (2, 2)))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("size, window, pools", [(56, 7, 3), (28, 7, 2), (14, 14, 0), (7, 7, 0)])
def test_gcvit_global_query_is_one_window(size, window, pools):
    gen = GlobalQueryGen(16, size, window)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in gen.modules()) == pools
    assert gen(torch.randn(2, size, size, 16)).shape == (2, window * window, 16)
