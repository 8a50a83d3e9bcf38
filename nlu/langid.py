"""Language identification for short, informal worker messages.

Two steps:

1. **Script**: letters are counted per script. A script that only one locale pack writes in
   (Bengali script -> ``bn``, Devanagari -> ``ne``, Myanmar -> ``my``, Thai -> ``th``) decides
   the language at once, with confidence equal to that script's share of the letters.
2. **Classifier per shared script**: where several packs write in one script (Latin: English,
   romanized Bengali and Nepali, Vietnamese with or without diacritics, Indonesian, Malay), a
   character n-gram logistic regression trained on those packs' examples decides. Vietnamese
   examples are also learnt with their diacritics removed, since many workers type them so.

Nothing here lists languages: the packs do. A new pack in a new script gets rule 1; a new pack in
a shared script joins that script's classifier.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable

from nlu.script import SCRIPT_PATTERNS, fold_latin, script_counts

FALLBACK_LANGUAGE = "en"


@dataclasses.dataclass
class LanguageGuess:
    language: str
    confidence: float
    script: str


def _dominant_script(text: str) -> tuple[str | None, float]:
    counts = script_counts(text)
    counts.pop("Zyyy", None)
    total = sum(counts.values())
    if not total:
        return None, 0.0
    native = {k: v for k, v in counts.items() if k in SCRIPT_PATTERNS}
    # Native letters win over Latin ones: "amar বেতন" is Bengali with an English-letter word.
    best = max(native, key=native.get) if native else "Latn"
    return best, counts[best] / total


def strip_diacritics(text: str) -> str:
    return " ".join(fold_latin(w) for w in text.split())


class LanguageIdentifier:
    """Script rules plus one classifier for each script shared by several languages."""

    def __init__(
        self,
        script_language: dict[str, str],
        classifiers: dict[str, object],
        fallback: str = FALLBACK_LANGUAGE,
    ) -> None:
        self.script_language = script_language
        self.classifiers = classifiers
        self.fallback = fallback

    @classmethod
    def train(cls, examples: Iterable[tuple[str, str]], fallback: str = FALLBACK_LANGUAGE):
        """Train from ``(text, language)`` pairs, as the locale packs provide them."""
        by_script: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for text, language in examples:
            script, _ = _dominant_script(text)
            if script is None:
                continue
            by_script[script].append((text, language))
            if script == "Latn":
                folded = strip_diacritics(text)
                if folded != text.casefold():
                    by_script[script].append((folded, language))
        per_language = Counter(lang for pairs in by_script.values() for _, lang in pairs)
        script_language: dict[str, str] = {}
        classifiers: dict[str, object] = {}
        for script, pairs in by_script.items():
            in_script = Counter(lang for _, lang in pairs)
            # A script counts for a language when it is a writing habit of that language (5% of
            # its examples), not the odd English word in a Thai pack.
            major = {lang for lang, n in in_script.items() if n >= 0.05 * per_language[lang]}
            if len(major) == 1:
                script_language[script] = major.pop()
                continue
            pairs = [(t, lang) for t, lang in pairs if lang in major]
            classifiers[script] = _fit([t for t, _ in pairs], [lang for _, lang in pairs])
        return cls(script_language, classifiers, fallback)

    def identify(self, text: str) -> LanguageGuess:
        script, share = _dominant_script(text)
        if script is None:
            return LanguageGuess(self.fallback, 0.0, "")
        if script in self.classifiers:
            clf = self.classifiers[script]
            probabilities = clf.predict_proba([text])[0]
            best = int(probabilities.argmax())
            return LanguageGuess(str(clf.classes_[best]), float(probabilities[best]) * share, script)
        if script in self.script_language:
            return LanguageGuess(self.script_language[script], share, script)
        if "Latn" in self.classifiers:  # a script no pack writes in: the best we can do
            guess = self.identify(strip_diacritics(text))
            return LanguageGuess(guess.language, 0.0, script)
        return LanguageGuess(self.fallback, 0.0, script)


def _fit(texts: list[str], labels: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion(
        [
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True,
                                      sublinear_tf=True, min_df=1)),
            ("words", TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b",
                                      lowercase=True, sublinear_tf=True)),
        ]
    )
    model = make_pipeline(features, LogisticRegression(C=20.0, max_iter=2000))
    model.fit(texts, labels)
    return model
