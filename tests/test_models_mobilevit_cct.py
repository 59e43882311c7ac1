import pytest
import torch

from edge_sdk.models import create_model, get_model_card, list_models
from edge_sdk.models.blocks import TransformerBlock
from edge_sdk.models.cct import CCTBlock, SeqPool
from edge_sdk.models.mobilevit import fold, unfold


def _attn(layers: int, tokens: int, dim: int) -> int:
    """MACs of the two attention matmuls (q @ k^T, attn @ v) over all layers.

    The CCT README's MAC counts leave these out (its numbers equal ours minus
    exactly this term for every row); our counter includes them, so they are added back.
    """
    return 2 * layers * tokens * tokens * dim


# name: (params, MACs at the card's input size)
PUBLISHED = {
    # params: ml-cvnets / timm 1.0.31 `mobilevit_xxs` exact count (paper, Table: 1.3 M);
    # MACs: open-mmlab/mmpretrain configs/mobilevit/README.md (converted ml-cvnets weights), 0.42 G at 256
    "mobilevit_xxs": (1_272_024, 0.42e9),
    # ml-cvnets / timm exact count (paper: 2.3 M); mmpretrain README 1.05 G
    "mobilevit_xs": (2_317_848, 1.05e9),
    # ml-cvnets / timm exact count (paper: 5.6 M); mmpretrain README 2.03 G
    "mobilevit_s": (5_578_632, 2.03e9),
    # SHI-Labs/Compact-Transformers README, CIFAR table: CCT-2/3x2 0.284M, 0.033G (64 tokens, dim 128)
    "cct_2_3x2_32": (0.284e6, 0.033e9 + _attn(2, 64, 128)),
    # README CIFAR table: CCT-4/3x2 0.482M, 0.046G
    "cct_4_3x2_32": (0.482e6, 0.046e9 + _attn(4, 64, 128)),
    # README CIFAR table: CCT-6/3x1 3.168M, 0.813G; that row leaves out the 256x256 positional
    # embedding (3,233,803 - 65,536 = 3,168,267) which every other row counts, so it is added back
    "cct_6_3x1_32": (3.168e6 + 256 * 256, 0.813e9 + _attn(6, 256, 256)),
    # README CIFAR table: CCT-6/3x2 3.327M, 0.241G
    "cct_6_3x2_32": (3.327e6, 0.241e9 + _attn(6, 64, 256)),
    # README CIFAR table: CCT-7/3x1 3.760M, 0.947G (256 tokens)
    "cct_7_3x1_32": (3.760e6, 0.947e9 + _attn(7, 256, 256)),
    # README CIFAR table: CCT-7/3x2 3.853M, 0.275G
    "cct_7_3x2_32": (3.853e6, 0.275e9 + _attn(7, 64, 256)),
    # No published count for CCT-7/7x2 with 1000 classes: the reference architecture (src/cct.py
    # cct_7_7x2_224, num_classes=1000) by hand: convs 3*64*49 + 64*256*49, embedding 196*256,
    # 7 layers of 526,336, final norm 512, pooling 257, fc 257,000 params; MACs: convs
    # 112^2*64*147 + 28^2*256*3136, per layer 196*256*2048 (linears) + attention, pooling and fc.
    "cct_7_7x2_224": (
        9_408 + 802_816 + 50_176 + 7 * 526_336 + 512 + 257 + 257_000,
        118_013_952 + 629_407_744 + 7 * 196 * 256 * 2048 + _attn(7, 196, 256) + 2 * 196 * 256 + 256_000,
    ),
    # README ImageNet table: CCT-14/7x2 at 224, 22.36M, 5.11G (196 tokens, dim 384)
    "cct_14_7x2_224": (22.36e6, 5.11e9 + _attn(14, 196, 384)),
    # README ImageNet table: CCT-14/7x2 at 384, 22.51M, 15.02G (576 tokens)
    "cct_14_7x2_384": (22.51e6, 15.02e9 + _attn(14, 576, 384)),
}


def test_every_registered_variant_has_a_published_reference():
    assert sorted(list_models("mobilevit*") + list_models("cct*")) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_and_macs_match_the_published_numbers(name):
    card = get_model_card(name)
    params, macs = PUBLISHED[name]
    assert abs(card.params - params) / params < 0.005, card.params
    assert abs(card.macs - macs) / macs < 0.05, card.macs


def test_mobilevit_cards_follow_the_reference_preprocessing():
    card = get_model_card("mobilevit_xs")
    assert card.input_size == (3, 256, 256)
    assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0)
    assert card.crop_pct == 0.9


def test_cifar_sized_cct_cards_have_ten_classes_and_no_labels():
    card = get_model_card("cct_7_3x1_32")
    assert card.input_size == (3, 32, 32) and card.num_classes == 10 and card.labels is None
    assert get_model_card("cct_14_7x2_224").num_classes == 1000


def test_unfold_then_fold_round_trips_exactly():
    x = torch.randn(2, 5, 8, 12)
    patches = unfold(x, (2, 2))
    assert patches.shape == (2 * 4, 4 * 6, 5)
    assert torch.equal(fold(patches, (8, 12), (2, 2)), x)


def test_unfold_groups_one_pixel_position_of_every_patch():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = unfold(x, (2, 2))
    # sequence 1 of image 0: the top-right pixel of each 2x2 patch, patches in row-major order
    assert torch.equal(patches[1], x[0, :, 0::2, 1::2].flatten(1).T)
    # image 1 starts after the 4 sequences of image 0
    assert torch.equal(patches[4 + 2], x[1, :, 1::2, 0::2].flatten(1).T)


def test_unfold_rejects_a_map_the_patches_do_not_tile():
    with pytest.raises(ValueError, match="divisible"):
        unfold(torch.zeros(1, 4, 6, 7), (2, 2))


def test_sequence_pooling_weights_sum_to_one_over_tokens():
    pool = SeqPool(16)
    x = torch.randn(3, 10, 16)
    weights = pool.weights(x)
    assert weights.shape == (3, 10, 1)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, 1))
    torch.testing.assert_close(pool(x), (weights * x).sum(dim=1))


def test_cct_block_keeps_the_reference_wiring():
    """LN(x + MHSA(LN(x))) feeds both the MLP and its residual (SHI-Labs/Compact-Transformers#25)."""
    torch.manual_seed(0)
    block = CCTBlock(32, 4, mlp_ratio=2.0, qkv_bias=False).eval()
    x = torch.randn(2, 9, 32)
    y = block.norm2(x + block.attn(block.norm1(x)))
    with torch.no_grad():
        torch.testing.assert_close(block(x), y + block.mlp(y))
    assert isinstance(block, TransformerBlock) and block.attn.qkv.bias is None


@pytest.mark.parametrize(
    "name, size",
    # each expansion ratio, and each tokenizer shape: one 3x3 conv, two 3x3, two 7x7
    [("mobilevit_xxs", 128), ("mobilevit_xs", 128), ("cct_7_3x1_32", 64), ("cct_2_3x2_32", 64), ("cct_7_7x2_224", 160)],
)
def test_forward_with_other_classes_channels_and_size(name, size):
    model = create_model(name, num_classes=7, in_chans=1, img_size=size)
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)
    assert model.card.num_classes == 7 and model.card.input_size == (1, size, size)


def test_mobilevit_refuses_sizes_its_patches_do_not_tile():
    with pytest.raises(ValueError, match="multiples of 64"):
        create_model("mobilevit_xxs", img_size=100)
    model = create_model("mobilevit_xxs", img_size=128)
    with pytest.raises(ValueError, match="96x96"):
        model(torch.randn(1, 3, 96, 96))  # 96 -> 3x3 features at the last MobileViT block


def test_cct_refuses_an_input_size_it_was_not_built_for():
    model = create_model("cct_2_3x2_32")
    with pytest.raises(ValueError, match=r"img_size=\(64, 64\)"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name", ["mobilevit_xxs", "cct_2_3x2_32"])
def test_initialisation_is_deterministic_per_seed(name):
    x = torch.randn(1, 3, 64, 64)
    a, b, c = (create_model(name, img_size=64, seed=s) for s in (1, 1, 2))
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
