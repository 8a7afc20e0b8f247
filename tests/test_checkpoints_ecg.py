"""Released ECG checkpoint layouts: random weights written in each published layout load strictly and score a real
PTB-XL record; a wrong key or shape fails with a SpecError naming the file and the key.

Layouts (read from each project's public code, see the docstrings of medzs.encoders.merl / fairseq_ecg): MERL
``*_bestZeroShotAll_ckpt.pth`` / ``*_encoder.pth`` / training ``module.`` checkpoints (ResNet1D-18 and ViT-tiny),
D-BETA ``ckpt["model"]``, ECG-FM fairseq-signals checkpoints (pre-trained and fine-tuned), MELP safetensors. Text
towers are tiny BERT / T5 configs with a small vocabulary written into tmp_path; key names, nesting and prefixes
are those of the releases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medzs import registry
from medzs.errors import SpecError
from medzs.transforms.ecg import preprocess

WORDS = ["atrial", "fibrillation", "normal", "ecg", "sinus", "rhythm", "left", "bundle", "branch", "block", "st",
         "elevation", "t", "wave", "inversion", ",", "."]


@pytest.fixture(scope="module")
def ptbxl_record(shared_data: Path) -> dict:
    """PTB-XL ecg_id 9 at 500 Hz (MERL PTBXL test split, strat_fold 10)."""
    from medzs.io.detect import read_ecg

    return read_ecg(shared_data / "ecg" / "ptbxl2k" / "records500" / "00000" / "00009_hr.hea")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("tiny-bert")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=300)
    BertModel(cfg).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config

    d = tmp_path_factory.mktemp("tiny-t5")
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(d))
    T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
             feed_forward_proj="gated-gelu").save_pretrained(str(d))
    return d


def _x(record: dict, spec) -> torch.Tensor:
    return torch.from_numpy(preprocess(record, spec)).unsqueeze(0)


def _reference(name: str, seed: int = 1, **overrides):
    """An independently built model of the same config with other random weights (the 'release')."""
    cfg = registry.get_config(name)
    from dataclasses import replace

    cfg = replace(cfg, **overrides)
    return registry.build_model(cfg, seed=seed).eval(), cfg


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# -- MERL --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,width", [("merl-resnet18.release", 512), ("merl-vit-tiny.release", 192)])
def test_merl_full_checkpoint_scores_a_ptbxl_record(tmp_path, tiny_bert, ptbxl_record, name, width) -> None:
    ref, _ = _reference(name, text_model=str(tiny_bert))
    state = ref.state_dict()
    # some transformers versions save this buffer; the loader tolerates it
    state["lm_model.embeddings.position_ids"] = torch.arange(300).unsqueeze(0)
    assert any(k.startswith("ecg_encoder.") for k in state) and any(k.startswith("proj_t.") for k in state)
    path = tmp_path / "merl_bestZeroShotAll_ckpt.pth"
    torch.save(state, path)

    model = registry.create_model(name, weights=path, text_model=str(tiny_bert))
    _assert_same_weights(model, ref)
    x = _x(ptbxl_record, model.config.input_spec)
    assert tuple(x.shape) == (1, 12, 5000)
    assert float(x.min()) == 0.0 and float(x.max()) == pytest.approx(1.0)
    with torch.no_grad():
        e = model.encode_signal(x)
        t = model.encode_text(["Atrial fibrillation", "normal ECG, sinus rhythm"])
        e_ref, t_ref = ref.encode_signal(x), ref.encode_text(["atrial fibrillation", "normal ecg, sinus rhythm"])
    assert tuple(e.shape) == (1, 256) and tuple(t.shape) == (2, 256)
    assert torch.linalg.norm(e, dim=-1).item() == pytest.approx(1.0, abs=1e-5)
    scores = (e @ t.T).numpy()
    assert np.isfinite(scores).all() and np.abs(scores).max() <= 1.0 + 1e-5
    np.testing.assert_allclose(scores, (e_ref @ t_ref.T).numpy(), atol=1e-5)  # prompts are lower-cased (MERL)


@pytest.mark.parametrize("name,width", [("merl-resnet18.release", 512), ("merl-vit-tiny.release", 192)])
def test_merl_encoder_only_checkpoint_is_an_embedding_model(tmp_path, ptbxl_record, name, width) -> None:
    ref, _ = _reference(name)
    path = tmp_path / "merl_bestZeroShotAll_encoder.pth"
    torch.save(ref.ecg_encoder.state_dict(), path)  # model.module.ecg_encoder.state_dict(): no prefix
    assert "ecg_encoder.conv1.weight" not in torch.load(path, weights_only=True)

    model = registry.create_model(name, weights=path)
    assert model.joint is False
    _assert_same_weights(model.ecg_encoder, ref.ecg_encoder)
    with torch.no_grad():
        e = model.encode_signal(_x(ptbxl_record, model.config.input_spec))
        f = ref.backbone_features(_x(ptbxl_record, model.config.input_spec))
    assert tuple(e.shape) == (1, width)
    np.testing.assert_allclose(e.numpy(), torch.nn.functional.normalize(f, dim=-1).numpy(), atol=1e-5)
    with pytest.raises(SpecError, match="no text tower.*--linear-probe"):
        model.encode_text(["normal ecg"])


def test_merl_training_checkpoint_with_module_prefix(tmp_path, tiny_bert, ptbxl_record) -> None:
    name = "merl-resnet18.release"
    ref, _ = _reference(name, text_model=str(tiny_bert))
    blob = {"epoch": 7,
            "model_state_dict": {"module." + k: v for k, v in ref.state_dict().items()},
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "weight_decay": 1e-8,
                                                                    "params": [0, 1, 2]}]}}
    path = tmp_path / "merl_7_ckpt.pth"
    torch.save(blob, path)
    model = registry.create_model(name, weights=path, text_model=str(tiny_bert))
    _assert_same_weights(model, ref)
    with torch.no_grad():
        s = model.encode_signal(_x(ptbxl_record, model.config.input_spec)) @ model.encode_text(["st elevation"]).T
    assert s.shape == (1, 1) and np.isfinite(s.numpy()).all()


def test_merl_full_checkpoint_without_text_folder_loads_the_ecg_side(tmp_path, tiny_bert, ptbxl_record) -> None:
    ref, _ = _reference("merl-vit-tiny.release", text_model=str(tiny_bert))
    path = tmp_path / "vit_bestZeroShotAll_ckpt.pth"
    torch.save(ref.state_dict(), path)
    model = registry.create_model("merl-vit-tiny.release", weights=path)
    assert model.joint is True
    with torch.no_grad():
        x = _x(ptbxl_record, model.config.input_spec)
        np.testing.assert_allclose(model.encode_signal(x).numpy(), ref.encode_signal(x).numpy(), atol=1e-5)
    with pytest.raises(SpecError, match="no text tower"):
        model.encode_text(["normal ecg"])


def test_merl_wrong_key_or_shape_names_file_and_key(tmp_path, tiny_bert) -> None:
    ref, _ = _reference("merl-resnet18.release", text_model=str(tiny_bert))
    state = ref.state_dict()
    renamed = dict(state)
    renamed["att_pool_head.c_proj.weightX"] = renamed.pop("att_pool_head.c_proj.weight")
    p1 = tmp_path / "renamed_bestZeroShotAll_ckpt.pth"
    torch.save(renamed, p1)
    with pytest.raises(SpecError, match=r"renamed_bestZeroShotAll_ckpt\.pth.*'att_pool_head\.c_proj\.weight'"):
        registry.create_model("merl-resnet18.release", weights=p1, text_model=str(tiny_bert))
    bad = dict(state)
    bad["downconv.weight"] = torch.zeros(128, 512, 1)
    p2 = tmp_path / "shape_bestZeroShotAll_ckpt.pth"
    torch.save(bad, p2)
    with pytest.raises(SpecError, match=r"shape_bestZeroShotAll_ckpt\.pth.*'downconv\.weight'.*\(128, 512, 1\)"):
        registry.create_model("merl-resnet18.release", weights=p2, text_model=str(tiny_bert))
    # a ViT checkpoint is not a ResNet one
    vit, _ = _reference("merl-vit-tiny.release")
    p3 = tmp_path / "vit_encoder.pth"
    torch.save(vit.ecg_encoder.state_dict(), p3)
    with pytest.raises(SpecError, match=r"vit_encoder\.pth.*key"):
        registry.create_model("merl-resnet18.release", weights=p3)


# -- D-BETA ------------------------------------------------------------------------------------------------------
TINY_TRANSFORMER = {"conv_layers": [[16, 2, 2]] * 4, "embed_dim": 32, "layers": 2, "heads": 4, "ffn_dim": 64,
                    "conv_pos": 8, "conv_pos_groups": 4}


def test_dbeta_checkpoint_scores_a_ptbxl_record(tmp_path, tiny_t5, ptbxl_record) -> None:
    name = "dbeta.release"
    over = {"text_model": str(tiny_t5), "embed_dim": 32,
            "extra": {**registry.get_config(name).extra, "arch_kwargs": TINY_TRANSFORMER}}
    ref, _ = _reference(name, **over)
    state = ref.state_dict()
    for k in ("language_encoder.shared.weight", "language_encoder.encoder.embed_tokens.weight",
              "ecg_encoder.conv_pos.pos_conv.0.weight_g", "ecg_encoder.feature_extractor.conv_layers.0.2.weight",
              "class_embedding", "multi_modal_ecg_proj.weight", "unimodal_language_pooler.dense.weight"):
        assert k in state, k
    # pre-training-only modules of the release (ignored, documented in DBETA_UNUSED)
    state.update({"ecg_encoder.mask_emb": torch.rand(32), "mlm_head.bias": torch.zeros(20),
                  "itm_head.fc.weight": torch.zeros(2, 64), "modality_type_embeddings.weight": torch.zeros(2, 32),
                  "multi_modal_ecg_layers.0.attention.self.query.weight": torch.zeros(32, 32),
                  "multi_modal_language_pooler.dense.weight": torch.zeros(32, 32)})
    path = tmp_path / "dbeta_sample.pt"
    torch.save({"model": state, "epoch": 1}, path)

    model = registry.create_model(name, weights=path, **over)
    _assert_same_weights(model, ref)
    x = _x(ptbxl_record, model.config.input_spec)
    assert tuple(x.shape) == (1, 12, 5000)
    with torch.no_grad():
        s = model.encode_signal(x) @ model.encode_text(["Atrial fibrillation", "normal ecg"]).T
        s_ref = ref.encode_signal(x) @ ref.encode_text(["atrial fibrillation", "normal ecg"]).T
    assert s.shape == (1, 2) and np.isfinite(s.numpy()).all()
    np.testing.assert_allclose(s.numpy(), s_ref.numpy(), atol=1e-5)

    del state["unimodal_ecg_pooler.dense.bias"]
    bad = tmp_path / "dbeta_missing.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(SpecError, match=r"dbeta_missing\.pt.*'unimodal_ecg_pooler\.dense\.bias' missing"):
        registry.create_model(name, weights=bad, **over)


# -- ECG-FM ------------------------------------------------------------------------------------------------------
def _ecgfm_over() -> dict:
    return {"extra": {**registry.get_config("ecgfm.release").extra, "arch_kwargs": TINY_TRANSFORMER}}


def test_ecgfm_pretrained_fairseq_checkpoint_embeds_a_ptbxl_record(tmp_path, ptbxl_record) -> None:
    ref, _ = _reference("ecgfm.release", **_ecgfm_over())
    state = dict(ref.ecg.state_dict())  # top-level keys, as Wav2Vec2CMSCModel stores them
    assert "encoder.layers.0.self_attn.q_proj.weight" in state and "conv_pos.pos_conv.0.weight_v" in state
    state.update({"mask_emb": torch.rand(32), "quantizer.vars": torch.zeros(1, 640, 16),
                  "quantizer.weight_proj.weight": torch.zeros(640, 16), "project_q.weight": torch.zeros(8, 16),
                  "final_proj.weight": torch.zeros(8, 32), "final_proj.bias": torch.zeros(8)})
    path = tmp_path / "mimic_iv_ecg_physionet_pretrained.pt"
    torch.save({"cfg": {"model": {"_name": "wav2vec2_cmsc"}}, "model": state, "extra_state": {}}, path)

    model = registry.create_model("ecgfm.release", weights=path, **_ecgfm_over())
    _assert_same_weights(model, ref)
    x = _x(ptbxl_record, model.config.input_spec)
    assert tuple(x.shape) == (1, 12, 2500)
    with torch.no_grad():
        e = model.encode_signal(x)
    assert tuple(e.shape) == (1, 32) and np.isfinite(e.numpy()).all()
    with pytest.raises(SpecError, match="has no text tower: use it with --linear-probe"):
        model.encode_text(["normal ecg"])


def test_ecgfm_finetuned_checkpoint_and_new_weight_norm_names(tmp_path, ptbxl_record) -> None:
    ref, _ = _reference("ecgfm.release", **_ecgfm_over())
    state = {}
    for k, v in ref.ecg.state_dict().items():
        k = k.replace("pos_conv.0.weight_g", "pos_conv.0.parametrizations.weight.original0")
        k = k.replace("pos_conv.0.weight_v", "pos_conv.0.parametrizations.weight.original1")
        state["encoder." + k] = v
    state.update({"proj.weight": torch.zeros(26, 32), "proj.bias": torch.zeros(26)})
    path = tmp_path / "physionet_finetuned.pt"
    torch.save({"model": state}, path)
    model = registry.create_model("ecgfm.release", weights=path, **_ecgfm_over())
    _assert_same_weights(model, ref)
    with torch.no_grad():
        x = _x(ptbxl_record, model.config.input_spec)
        np.testing.assert_allclose(model.encode_signal(x).numpy(), ref.encode_signal(x).numpy(), atol=1e-5)

    state["encoder.encoder.layers.1.fc1.weight"] = torch.zeros(64, 31)
    bad = tmp_path / "ecgfm_bad_shape.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(SpecError, match=r"ecgfm_bad_shape\.pt.*'encoder\.layers\.1\.fc1\.weight'.*\(64, 31\)"):
        registry.create_model("ecgfm.release", weights=bad, **_ecgfm_over())


# -- MELP --------------------------------------------------------------------------------------------------------
def test_melp_safetensors_embeds_a_ptbxl_record(tmp_path, ptbxl_record) -> None:
    from safetensors.torch import save_file

    over = {"embed_dim": 16, "extra": {**registry.get_config("melp-ecg.release").extra,
                                       "arch_kwargs": TINY_TRANSFORMER, "pool_heads": 4}}
    ref, _ = _reference("melp-ecg.release", **over)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    assert {"attn_pool_contrast.query", "attn_pool_contrast.attn.q_proj_weight", "attn_pool_contrast.ln_k.weight",
            "ln_contrast.weight", "ecg_encoder.encoder.layer_norm.weight"} <= set(state)
    state.update({"proj_contrast": torch.zeros(16, 16), "logit_scale": torch.tensor(2.6),
                  "attn_pool_caption.query": torch.zeros(128, 32), "ln_caption.weight": torch.ones(32),
                  "bn.running_mean": torch.zeros(32), "ecg_encoder.mask_emb": torch.zeros(32),
                  "ecg_encoder.quantizer.vars": torch.zeros(1, 640, 16)})
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    model = registry.create_model("melp-ecg.release", weights=path, **over)
    _assert_same_weights(model, ref)
    x = _x(ptbxl_record, model.config.input_spec)
    with torch.no_grad():
        e = model.encode_signal(x)
    assert tuple(e.shape) == (1, 16)
    np.testing.assert_allclose(e.numpy(), ref.encode_signal(x).detach().numpy(), atol=1e-5)
    with pytest.raises(SpecError, match="has no text tower: use it with --linear-probe"):
        model.encode_text(["normal ecg"])

    # exported from the whole MELP model: one more 'ecg_encoder.' level
    nested = {"ecg_encoder." + k: v for k, v in state.items()}
    nested["text_decoder.ln_final.weight"] = torch.ones(8)
    p2 = tmp_path / "melp_full.safetensors"
    save_file(nested, str(p2))
    _assert_same_weights(registry.create_model("melp-ecg.release", weights=p2, **over), ref)

    del state["ln_contrast.bias"]
    p3 = tmp_path / "melp_missing.safetensors"
    save_file(state, str(p3))
    with pytest.raises(SpecError, match=r"melp_missing\.safetensors.*'ln_contrast\.bias' missing"):
        registry.create_model("melp-ecg.release", weights=p3, **over)


def test_merl_text_folder_with_config_and_tokenizer_only(tmp_path, tiny_bert, ptbxl_record) -> None:
    """A MedCPT folder without weights is enough: the full checkpoint carries lm_model.*."""
    import shutil

    folder = tmp_path / "medcpt-config-only"
    folder.mkdir()
    for f in tiny_bert.iterdir():
        if f.suffix in (".json", ".txt"):
            shutil.copy(f, folder / f.name)
    assert not list(folder.glob("*.safetensors"))
    ref, _ = _reference("merl-resnet18.release", text_model=str(tiny_bert))
    path = tmp_path / "r18_bestZeroShotAll_ckpt.pth"
    torch.save(ref.state_dict(), path)
    model = registry.create_model("merl-resnet18.release", weights=path, text_model=str(folder))
    _assert_same_weights(model, ref)
    with torch.no_grad():
        np.testing.assert_allclose(model.encode_text(["normal ecg"]).numpy(), ref.encode_text(["normal ecg"]).numpy(),
                                   atol=1e-5)


def test_legacy_ecg_resnet18_merl_accepts_training_checkpoints_and_position_ids(tmp_path, tiny_bert) -> None:
    """The older ``ecg-resnet18.merl`` entry (ECGTextModel) also reads module.-prefixed training files."""
    ref, _ = _reference("ecg-resnet18.merl", text_model=str(tiny_bert))
    state = {k.replace("ecg.", "", 1): v for k, v in ref.ecg.state_dict().items()}
    state.update({k: v for k, v in ref.text.state_dict().items()})
    state["lm_model.embeddings.position_ids"] = torch.arange(300).unsqueeze(0)
    path = tmp_path / "legacy_3_ckpt.pth"
    torch.save({"epoch": 3, "model_state_dict": {"module." + k: v for k, v in state.items()}}, path)
    model = registry.create_model("ecg-resnet18.merl", weights=path, text_model=str(tiny_bert))
    for k, v in ref.ecg.state_dict().items():
        assert torch.equal(model.ecg.state_dict()[k], v), k
