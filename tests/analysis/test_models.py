"""The FC-DenseNet, its configuration, member files and the dry run that vets uploads."""

from __future__ import annotations

import io
import json
import math
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from analysis.models import (
    NETWORK_PRESETS,
    NetworkConfig,
    build_network,
    dry_run,
    export_torchscript,
    fcdensenet_probability,
    load_member,
    save_member,
    tumor_probability,
)

# One torch thread (tests/analysis/conftest.py): the two cores are shared with other work.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_output(a: nn.Module, b: nn.Module, shape: tuple[int, ...] = (2, 3, 48, 40)) -> bool:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        return bool(torch.equal(a.eval()(x), b.eval()(x)))


# --------------------------------------------------------------------------- configuration


def test_config_round_trips_through_json() -> None:
    config = NetworkConfig.preset("tiny")
    again = NetworkConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert isinstance(again.down_blocks, tuple)


def test_dict_of_a_config_is_its_json_safe_dictionary() -> None:
    config = NetworkConfig.preset("tiny")
    assert dict(config) == config.to_dict()
    assert NetworkConfig.from_dict(dict(config)) == config


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown network configuration keys: grwth_rate"):
        NetworkConfig.from_dict({"grwth_rate": 4})
    with pytest.raises(ValueError, match="up_blocks"):
        NetworkConfig(down_blocks=(2, 2), up_blocks=(2,))
    with pytest.raises(ValueError, match="n_classes"):
        NetworkConfig(n_classes=3)
    with pytest.raises(ValueError, match="unknown network preset"):
        NetworkConfig.preset("huge")


def test_tiny_preset_is_small_and_paper_preset_is_fc_densenet103() -> None:
    tiny = sum(p.numel() for p in build_network("tiny", seed=0).parameters())
    assert 1_000 <= tiny <= 100_000
    paper = NETWORK_PRESETS["paper"]
    assert (paper.growth_rate, paper.down_blocks, paper.bottleneck_layers) == (16, (4, 5, 7, 10, 12), 15)


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (5, 9)])
def test_output_has_two_logits_at_the_input_size(size: tuple[int, int]) -> None:
    net = build_network("tiny", seed=0).eval()
    with torch.inference_mode():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 2, *size)


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = (build_network("tiny", seed=s) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.first.weight, c.first.weight)


def test_building_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    build_network("tiny", seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_weights_are_he_initialised() -> None:
    net = build_network(
        NetworkConfig(initial_features=64, growth_rate=64, down_blocks=(1,), bottleneck_layers=1), seed=0
    )
    conv = net.down[0].layers[0].conv  # type: ignore[index,union-attr]  # 64 inputs x 3 x 3
    expected = math.sqrt(2.0 / (64 * 9))
    assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.05)
    assert net.classifier.bias is not None and float(net.classifier.bias.detach().abs().sum()) == 0.0


def test_tumor_probability_is_softmax_class_one_or_sigmoid() -> None:
    logits = torch.randn(2, 2, 4, 5)
    p = tumor_probability(lambda x: logits, torch.zeros(2, 3, 4, 5))  # type: ignore[arg-type]
    assert torch.allclose(p, torch.softmax(logits, 1)[:, 1], atol=1e-6)
    one = torch.randn(2, 1, 4, 5)
    assert torch.allclose(tumor_probability(lambda x: one, torch.zeros(2, 3, 4, 5)), torch.sigmoid(one[:, 0]))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- member files


def test_state_dict_checkpoint_round_trip(tmp_path: Path) -> None:
    config = NetworkConfig.preset("tiny")
    net = build_network(config, seed=5)
    save_member(net, config, tmp_path / "m.pt")
    loaded, loaded_config = load_member(tmp_path / "m.pt")
    assert loaded_config == config
    assert not loaded.training
    assert _same_output(net, loaded)


def test_checkpoint_loads_from_a_file_object_and_a_bare_state_dict_with_a_config() -> None:
    config = NetworkConfig.preset("tiny")
    net = build_network(config, seed=5)
    buffer = io.BytesIO()
    torch.save({"config": config.to_dict(), "state_dict": net.state_dict()}, buffer)
    buffer.seek(0)
    assert _same_output(net, load_member(buffer)[0])
    bare = io.BytesIO()
    torch.save(net.state_dict(), bare)
    bare.seek(0)
    assert _same_output(net, load_member(bare, config=config)[0])


def test_torchscript_round_trip_keeps_the_config_and_any_tile_size(tmp_path: Path) -> None:
    config = NetworkConfig.preset("tiny")
    net = build_network(config, seed=2)
    export_torchscript(net, config, tmp_path / "m.ts")
    loaded, loaded_config = load_member(tmp_path / "m.ts")
    assert loaded_config == config
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert _same_output(net, loaded, (1, 3, 48, 40))
    assert _same_output(net, loaded, (1, 3, 33, 21))


def test_foreign_torchscript_without_config_loads_with_none(tmp_path: Path) -> None:
    export_torchscript(nn.Conv2d(3, 2, 1), None, tmp_path / "foreign.pt")
    module, config = load_member(tmp_path / "foreign.pt")
    assert config is None
    dry_run(module, tile_size=16)


def test_load_member_rejects_files_that_are_not_models(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a TorchScript model or a torch checkpoint"):
        load_member(text)
    archive = tmp_path / "archive.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(ValueError, match=r"archive\.pt"):
        load_member(archive)
    with pytest.raises(ValueError, match="no such model file"):
        load_member(tmp_path / "missing.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_member_never_unpickles_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "config": {}, "hook": print}))
    with pytest.raises(ValueError):
        load_member(path)


def test_load_member_rejects_weights_of_another_shape(tmp_path: Path) -> None:
    net = build_network("tiny", seed=0)
    other = NetworkConfig.preset("tiny").to_dict() | {"growth_rate": 5}
    torch.save({"config": other, "state_dict": net.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="do not match the network configuration"):
        load_member(tmp_path / "m.pt")


# --------------------------------------------------------------------------- dry run


class _NaN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2, x.shape[2], x.shape[3]), float("nan"))


class _Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :2], x[:, :2]


def test_dry_run_accepts_the_network_and_a_one_channel_sigmoid_model() -> None:
    network = build_network("tiny", seed=0)
    weights = {k: v.clone() for k, v in network.state_dict().items()}
    assert network.training
    dry_run(network, tile_size=64)  # accepted: no error
    # The check leaves the model as it found it: still training, the same weights.
    assert network.training
    assert all(torch.equal(weights[k], v) for k, v in network.state_dict().items())
    sigmoid = nn.Conv2d(3, 1, 3, padding=1).eval()
    dry_run(sigmoid, tile_size=32)
    assert not sigmoid.training


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (nn.Conv2d(3, 3, 1), "outputs 3 channels"),
        (_NaN(), "NaN or infinite"),
        (nn.Conv2d(3, 2, 3, stride=2, padding=1), "must keep the input's spatial size"),
        (_Raises(), "model failed on a"),
        (_Pair(), "returns tuple"),
    ],
)
def test_dry_run_rejects_broken_models(model: nn.Module, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dry_run(model, tile_size=32)


def test_dry_run_rejects_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="not a TorchScript model or a torch checkpoint"):
        dry_run(path, tile_size=32)


def test_dry_run_loads_a_good_file_and_restores_training_mode(tmp_path: Path) -> None:
    config = NetworkConfig.preset("tiny")
    net = build_network(config, seed=0)
    save_member(net, config, tmp_path / "m.pt")
    dry_run(tmp_path / "m.pt", tile_size=32)
    net.train()
    dry_run(net, tile_size=32)
    assert net.training


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        (NetworkConfig.preset("tiny"), (2, 3, 64, 64)),
        # Odd sizes (reflect padding, cropped back), a sigmoid head, a one-layer block and no dropout.
        (NetworkConfig.preset("tiny"), (1, 3, 37, 50)),
        (
            NetworkConfig(
                initial_features=8, growth_rate=4, down_blocks=(1, 2), bottleneck_layers=1, dropout=0.0, n_classes=1
            ),
            (2, 3, 20, 12),
        ),
    ],
)
def test_lean_probability_equals_the_module_forward(config: NetworkConfig, shape: tuple[int, ...]) -> None:
    net = build_network(config, seed=3).eval()
    # Non-trivial BatchNorm statistics, so that the folded affine is exercised.
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.normal_(0, 0.3, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.2, generator=generator)
    x = torch.rand(shape, generator=generator)
    with torch.inference_mode():
        expected = tumor_probability(net, x)
        lean = fcdensenet_probability(net, x)
        cl_net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
        lean_cl = fcdensenet_probability(cl_net, x.contiguous(memory_format=torch.channels_last))
    assert lean.shape == expected.shape == (shape[0], shape[2], shape[3]) and lean.dtype == torch.float32
    torch.testing.assert_close(lean, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(lean_cl, expected, rtol=0, atol=1e-5)
