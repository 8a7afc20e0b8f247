"""Registry, encoders and checkpoint loading (MERL key/shape compatibility)."""

from __future__ import annotations

import pytest
import torch

from medzs import registry
from medzs.errors import SpecError


def merl_resnet18_ecg_keys(n_samples: int = 5000) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the ECG side of a MERL ResNet1D-18 ECGCLIP state dict, written out from the
    published architecture (Liu et al., ICML 2024), independently of medzs's module code."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["ecg_encoder.conv1.weight"] = (64, 12, 7)
    bn("ecg_encoder.bn1", 64)
    c_in = 64
    for layer, c in zip((1, 2, 3, 4), (64, 128, 256, 512)):
        for block in (0, 1):
            p = f"ecg_encoder.layer{layer}.{block}"
            keys[f"{p}.conv1.weight"] = (c, c_in if block == 0 else c, 3)
            bn(f"{p}.bn1", c)
            keys[f"{p}.conv2.weight"] = (c, c, 3)
            bn(f"{p}.bn2", c)
            if block == 0 and layer > 1:
                keys[f"{p}.shortcut.0.weight"] = (c, c_in, 1)
                bn(f"{p}.shortcut.1", c)
        c_in = c
    keys["ecg_encoder.linear.weight"] = (10, 512)
    keys["ecg_encoder.linear.bias"] = (10,)
    keys["downconv.weight"] = (256, 512, 1)
    keys["downconv.bias"] = (256,)
    length = -(-n_samples // 16)
    keys["att_pool_head.positional_embedding"] = (1, length + 1, 256)
    keys["att_pool_head.cls_token"] = (1, 1, 256)
    keys["att_pool_head.mhsa.in_proj_weight"] = (768, 256)
    keys["att_pool_head.mhsa.in_proj_bias"] = (768,)
    keys["att_pool_head.mhsa.out_proj.weight"] = (256, 256)
    keys["att_pool_head.mhsa.out_proj.bias"] = (256,)
    keys["att_pool_head.c_proj.weight"] = (256, 256)
    keys["att_pool_head.c_proj.bias"] = (256,)
    keys["linear1.weight"] = (256, 256)
    keys["linear2.weight"] = (256, 256)
    return keys


def _random_state(spec: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(*s, generator=g))
            for k, s in spec.items()}


def test_merl_ecg_tower_has_exactly_the_published_keys_and_shapes():
    from medzs.encoders.resnet1d import MERLECGEncoder

    own = {k: tuple(v.shape) for k, v in MERLECGEncoder(n_samples=5000).state_dict().items()}
    assert own == merl_resnet18_ecg_keys(5000)
    assert own["att_pool_head.positional_embedding"] == (1, 314, 256)  # 313 positions for 12 x 5000


def test_strict_load_of_a_random_merl_checkpoint(tmp_path):
    state = _random_state(merl_resnet18_ecg_keys(5000))
    # a DDP-style checkpoint ("module." prefix) of the ECG side, as MERL's training saves it
    ckpt = {"module." + k: v for k, v in state.items()}
    path = tmp_path / "merl_resnet18.pth"
    torch.save(ckpt, path)
    model = registry.create_model("ecg-resnet18.merl", weights=path,
                                  text_model=registry.BUNDLED_MINILM, text_pooling="mean")
    loaded = model.ecg.state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    x = torch.randn(2, 12, 5000)
    assert model.encode_signal(x).shape == (2, 256)


def test_merl_checkpoint_with_a_wrong_shape_is_refused(tmp_path):
    spec = merl_resnet18_ecg_keys(5000)
    spec["att_pool_head.positional_embedding"] = (1, 64, 256)  # a 1000-sample checkpoint
    path = tmp_path / "bad.pth"
    torch.save(_random_state(spec), path)
    with pytest.raises(SpecError, match="positional_embedding"):
        registry.create_model("ecg-resnet18.merl", weights=path, text_model=registry.BUNDLED_MINILM,
                              text_pooling="mean")


def test_merl_input_spec_uses_mimic_lead_order_and_minmax():
    spec = registry.get_config("ecg-resnet18.merl").input_spec
    assert spec.leads[4:6] == ("aVF", "aVL")
    assert spec.shape == (12, 5000)
    assert spec.normalization == "minmax"


def test_registry_names_and_unknown_name():
    names = registry.list_models()
    assert "ecg-resnet18.medzs-ptbxl" in names
    for n in names:
        assert n.startswith(registry.get_config(n).arch + ".")
    with pytest.raises(KeyError, match="registered"):
        registry.get_config("ecg-resnet18.nope")


def test_checkpoint_sha256_mismatch_is_refused(tmp_path):
    model = registry.build_model(registry.get_config("ecg-resnet18.random"))
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.shipped_state_dict()}, path)
    with pytest.raises(SpecError, match="sha256"):
        registry.create_model("ecg-resnet18.random", weights=path, sha256="0" * 64)
    # and with the right sha256 the weights load exactly
    m2 = registry.create_model("ecg-resnet18.random", weights=path, sha256=registry.sha256_file(path))
    assert torch.equal(m2.ecg.downconv.weight, model.ecg.downconv.weight)
