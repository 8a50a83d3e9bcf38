"""The multilingual encoder (``nlu.embedding``) and the danger detector's networks on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nlu import danger, embedding


@pytest.fixture(scope="module")
def encoder() -> embedding.Embedder:
    return embedding.Embedder.shared()


def test_the_encoder_puts_languages_in_one_space(encoder):
    """The real encoder, offline: "I want to die" in Bengali, Burmese, Thai and Vietnamese is
    nearer "I want to kill myself" in English than "my salary has not come" in the same
    language is."""
    wages = {
        "bn": "আমার বেতন তিন মাস দেয়নি",
        "my": "လစာ သုံးလ မရသေးဘူး",
        "th": "ไม่ได้รับเงินเดือนสามเดือนแล้ว",
        "vi": "ba tháng rồi tôi chưa được trả lương",
    }
    die = {
        "bn": "আমি আর বাঁচতে চাই না",
        "my": "ကျွန်တော် မနေချင်တော့ဘူး သေချင်တယ်",
        "th": "ฉันไม่อยากมีชีวิตอยู่แล้ว อยากตาย",
        "vi": "tôi không muốn sống nữa, tôi muốn chết",
    }
    anchor = encoder.embed(["I want to kill myself"])[0]
    for lang in wages:
        d, w = encoder.embed([die[lang], wages[lang]])
        assert np.isclose(np.linalg.norm(d), 1.0, atol=1e-3)
        assert d @ anchor > w @ anchor + 0.03, lang


def test_empty_huge_and_binary_text_is_embedded(encoder):
    vecs = encoder.embed(["", "x" * 200_000, "\x00\ufffd<script>", "🙂" * 50])
    assert vecs.shape == (4, embedding.DIM) and np.isfinite(vecs).all()


def test_the_file_cache_is_read_back_without_pickle_and_a_damaged_one_is_ignored(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HELPLINE_CACHE_DIR", str(tmp_path))
    first = embedding.Embedder()
    texts = ["fire in the dorm", "my passport is with the boss"]
    vecs = first.vectors(texts)
    path = tmp_path / "embeddings.npz"
    with np.load(path, allow_pickle=False) as data:  # plain arrays
        assert data["vecs"].shape == (2, embedding.DIM)

    second = embedding.Embedder()

    def refuse(texts):
        raise AssertionError(f"embedded again: {texts}")

    monkeypatch.setattr(second, "embed", refuse)
    assert np.allclose(second.vectors(texts), vecs)

    path.write_bytes(b"not a cache")
    third = embedding.Embedder()
    assert np.allclose(third.vectors(texts), vecs, atol=1e-6)  # rebuilt
    with np.load(path, allow_pickle=False) as data:
        assert len(data["keys"]) == 2


def _tiny(embed: bool = True) -> danger.DangerDetector:
    none = {k: [] for k in danger.KINDS}
    lex = danger.PackLexicon(
        "en", none | {"suicide": ["end my life"]}, ["goodbye forever"], ["killing me haha"],
        ["now i am safe"],
        none | {"suicide": ["i will end my life tonight", "no reason to live any more",
                            "i took many pills, sorry mother", "tell my kids papa loved them"],
                "confinement": ["they lock me in the room", "boss locked the door, no food"]},
        ["this job is killing me haha", "last year he hit me, now ok", "i miss my mother",
         "what does the law say about beating", "my passport is with the agent"],
    )  # fmt: skip
    others = [("what is my salary", "wages"), ("passport with boss", "documents"),
              ("hello", "greet"), ("they lock us inside help", "emergency")]  # fmt: skip
    return danger.DangerDetector.train([lex], others * 3, embed=embed)


@pytest.fixture(scope="module")
def tiny() -> danger.DangerDetector:
    return _tiny()


def test_the_networks_run_in_numpy_as_in_scikit_learn_and_survive_json(tiny, tmp_path):
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, embedding.DIM)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    net = MLPClassifier((8,), max_iter=300, random_state=0).fit(x, y)
    ours = danger.EncoderNetworks(
        [(net.coefs_[0], net.intercepts_[0], net.coefs_[1][:, 0], float(net.intercepts_[1][0]))]
    )
    assert np.allclose(ours.predict(x), net.predict_proba(x)[:, 1], atol=1e-6)

    assert tiny.encoder is not None and len(tiny.encoder.layers) == len(danger.EMBED_SEEDS)
    path = tmp_path / "danger.json"
    tiny.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["encoder"]) == len(danger.EMBED_SEEDS)
    loaded = danger.DangerDetector.load(path)
    for text in ("i will end my life tonight", "what is my salary", "boss locked the door"):
        assert abs(loaded.probability(text)[0] - tiny.probability(text)[0]) < 1e-3


TEXTS = (
    "i will end my life tonight",
    "no reason to live any more, sorry mother",
    "they lock me in the room and take my phone",
    "this job is killing me haha",
    "last year he hit me, now ok, new boss good",
    "what is my salary for overtime on sunday",
    "hello",
    "goodbye forever",
    "i want to end my life",
    "end my life? no, killing me haha",
)


def test_the_encoder_is_skipped_only_where_it_cannot_change_the_outcome(tiny, monkeypatch):
    """``assess`` runs the encoder only when the n-gram score could reach a bar; its outcome
    (danger, source, weak) is the same as with the combined score computed every time, at
    both weights (a language written in its own script, and the same typed in ASCII)."""
    monkeypatch.setattr(tiny, "non_ascii", ["bn"])
    assert tiny.encoder_weight("ami bachte chai na", "bn") == danger.ENCODER_WEIGHT_ASCII
    assert tiny.encoder_weight("আমি বাঁচতে চাই না", "bn") == danger.ENCODER_WEIGHT
    assert tiny.encoder_weight("i want to die", "en") == danger.ENCODER_WEIGHT
    for language in (None, "bn"):
        for text in TEXTS:
            matches, weak, over = tiny.lexicon.assess_phrases(text)
            exact, _ = tiny.probability(text, language)
            th = tiny.threshold_for(language)
            source = danger.decide(
                exact, bool(matches), over, danger._long_enough(text), th, tiny.lexicon_floor
            )
            got = tiny.assess(text, language)
            assert (got.source if got.danger else None) == source, (language, text)
            if source is None:
                weak_th = min(tiny.weak_threshold, th * 0.67)
                assert got.weak == (weak or bool(matches) or exact >= weak_th), text
    calls = []
    real = tiny.encoder.probability
    monkeypatch.setattr(tiny.encoder, "probability", lambda t: calls.append(t) or real(t))
    tiny.assess("hello there friend")  # an ordinary message far below every bar
    p, _ = tiny._ngrams("hello there friend")
    assert (calls == []) == (p < min(tiny.weak_threshold, tiny.threshold * 0.67) ** 2)


def test_the_packs_written_in_another_script_than_ascii_are_found_in_training(tiny):
    none = {k: [] for k in danger.KINDS}
    bn = danger.PackLexicon(
        "bn", none, [], [], [], none | {"suicide": ["আমি আর বাঁচতে চাই না", "ami ar bachte chai na"]},
        ["আমার বাড়ির কথা মনে পড়ে"],
    )  # fmt: skip
    en = danger.PackLexicon("en", none, [], [], [],
                            none | {"suicide": ["i want to die"], "fire": ["fire in the dorm"]},
                            ["i miss home"])  # fmt: skip
    det = danger.DangerDetector.train([bn, en], [("hello", "greet")] * 3, embed=False)
    assert det.non_ascii == ["bn"]
    assert danger.DangerDetector.from_json(det.to_json()).non_ascii == ["bn"]
    assert tiny.non_ascii == []


def test_inference_never_writes_a_workers_message_to_the_cache(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HELPLINE_CACHE_DIR", str(tmp_path))
    tiny.assess("my boss took my passport and locks me in, i want to die")
    assert not (tmp_path / "embeddings.npz").exists()
    key = embedding._key("my boss took my passport and locks me in, i want to die")
    assert key not in embedding.Embedder.shared()._memory


def test_without_the_encoder_the_score_is_the_ngrams_alone():
    det = _tiny(embed=False)
    assert det.encoder is None
    text = "i will end my life tonight"
    assert det.probability(text)[0] == pytest.approx(det._ngrams(text)[0])
    assert "encoder" in det.to_json() and det.to_json()["encoder"] is None
