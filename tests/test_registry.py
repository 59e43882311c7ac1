import pytest
import torch

from edge_sdk.errors import UnknownModelError, WeightsError
from edge_sdk.models import create_model, get_model_card, list_models


def test_mobilenet_v2_matches_the_paper():
    card = get_model_card("mobilenet_v2")
    # MobileNetV2 paper, Table 4 / reference implementation: 3,504,872 params, ~300 M MACs at 224.
    assert card.params == 3_504_872
    assert abs(card.macs - 300e6) / 300e6 < 0.01
    assert card.input_size == (3, 224, 224)
    assert card.paper_url.startswith("https://arxiv.org/abs/1801.04381")


def test_params_of_built_model_match_the_card():
    model = create_model("mobilenet_v2")
    assert sum(p.numel() for p in model.parameters()) == get_model_card("mobilenet_v2").params


def test_list_models_with_a_pattern():
    names = list_models("mobilenet_v2*")
    assert "mobilenet_v2" in names and "mobilenet_v2_035" in names
    assert names == sorted(names)
    assert list_models("no_such_family*") == []


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as err:
        create_model("mobilenetv2")
    assert "mobilenet_v2" in err.value.hint


def test_unknown_option_names_what_the_builder_accepts():
    with pytest.raises(TypeError, match="accepts"):
        create_model("mobilenet_v2", depth=3)


def test_creation_is_deterministic_per_seed():
    a, b = create_model("mobilenet_v2_035", seed=1), create_model("mobilenet_v2_035", seed=1)
    c = create_model("mobilenet_v2_035", seed=2)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.equal(a(x), c(x))


def test_random_models_give_well_scaled_logits():
    """BatchNorm statistics are settled at creation so random logits are not ~1e-9."""
    with torch.no_grad():
        logits = create_model("mobilenet_v2")(torch.randn(2, 3, 224, 224))
    assert logits.abs().max() > 1e-2


def test_num_classes_and_in_chans_reach_the_model_and_card():
    model = create_model("mobilenet_v2_035", num_classes=10, in_chans=1, img_size=64)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    assert model.card.num_classes == 10 and model.card.input_size == (1, 64, 64)
    assert model.card.labels is None  # ImageNet labels no longer apply


def test_weights_from_state_dict_checkpoint_and_whole_module(tmp_path):
    src = create_model("mobilenet_v2_035", num_classes=5, seed=3)
    x = torch.randn(1, 3, 96, 96)
    expected = src(x)
    torch.save(src.state_dict(), tmp_path / "sd.pt")
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "ckpt.pt")
    torch.save(src, tmp_path / "whole.pt")
    for name in ("sd.pt", "ckpt.pt", "whole.pt"):
        model = create_model("mobilenet_v2_035", num_classes=5, weights=tmp_path / name)
        torch.testing.assert_close(model(x), expected)


def test_weights_that_do_not_fit_are_reported_by_key(tmp_path):
    torch.save(create_model("mobilenet_v2_035", num_classes=5).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(WeightsError) as err:
        create_model("mobilenet_v2_035", weights=tmp_path / "sd.pt")
    assert "classifier.fc.weight" in str(err.value) and "wrong shape" in str(err.value)
    state = create_model("mobilenet_v2_035").state_dict()
    state.pop("features.0.0.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as err:
        create_model("mobilenet_v2_035", weights=state)
    assert "missing (1): features.0.0.weight" in str(err.value)
    assert "unexpected (1): extra.weight" in str(err.value)


def test_unreadable_weights_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        create_model("mobilenet_v2_035", weights=bad)
    with pytest.raises(WeightsError, match="does not exist"):
        create_model("mobilenet_v2_035", weights=tmp_path / "missing.pt")
