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

import numpy as np
import regex

from nlu.script import SCRIPT_PATTERNS, fold_latin, script_counts

FALLBACK_LANGUAGE = "en"
_WORD = regex.compile(r"[\p{L}\p{M}]+")


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


def _words(text: str) -> set[str]:
    """Lower-cased words without diacritics, digits or case references."""
    return {w for w in _WORD.findall(fold_latin(text.casefold())) if not w.isdigit()}


def strip_diacritics(text: str) -> str:
    return " ".join(fold_latin(w) for w in text.split())


class LanguageIdentifier:
    """Script rules plus one classifier for each script shared by several languages."""

    def __init__(
        self,
        script_language: dict[str, str],
        classifiers: dict[str, object],
        fallback: str = FALLBACK_LANGUAGE,
        priors: dict[str, float] | None = None,
    ) -> None:
        self.script_language = script_language
        self.classifiers = classifiers
        self.fallback = fallback
        self.priors = priors or {}

    @classmethod
    def train(
        cls,
        examples: Iterable[tuple[str, str]],
        fallback: str = FALLBACK_LANGUAGE,
        priors: dict[str, float] | None = None,
        defers_to: dict[str, str] | None = None,
    ) -> LanguageIdentifier:
        """Train from ``(text, language)`` pairs, as the locale packs provide them.

        Words that every language borrows ("ok", "help", "thanks", "menu") would otherwise be
        learnt as Burmese or Nepali as much as English. So an example whose every word is at least
        as common in the language it defers to (``defers_to``, a pack's ``langid_defers_to``; by
        default the fallback, English) is not learnt as its own language: Malay defers to
        Indonesian, every other language to English. "namaste" stays Nepali: English examples
        use it less often than Nepali ones.
        ``priors`` weigh a language up or down where a script is shared (a pack's
        ``langid_prior``).
        """
        examples = list(examples)
        defers_to = defers_to or {}
        # how often each word is used in each language, per example
        word_counts: dict[str, Counter] = defaultdict(Counter)
        totals: Counter = Counter()
        for text, language in examples:
            word_counts[language].update(_words(text))
            totals[language] += 1

        def belongs_to(word: str, target: str, language: str) -> bool:
            """``word`` is at least as common in ``target`` as in ``language``."""
            ours = word_counts[language][word] / max(totals[language], 1)
            theirs = word_counts[target][word] / max(totals[target], 1)
            return theirs > 0 and theirs >= ours

        by_script: dict[str, list[tuple[str, str]]] = defaultdict(list)
        per_language: Counter = Counter()
        for text, language in examples:
            script, _ = _dominant_script(text)
            if script is None:
                continue
            per_language[language] += 1
            if script == "Latn" and language != fallback:
                target = defers_to.get(language, fallback)
                words = _words(text)
                if words and all(belongs_to(w, target, language) for w in words):
                    continue
            by_script[script].append((text, language))
            if script == "Latn":
                folded = strip_diacritics(text)
                if folded != text.casefold():
                    by_script[script].append((folded, language))
        script_language: dict[str, str] = {}
        classifiers: dict[str, object] = {}
        for script, pairs in by_script.items():
            in_script = Counter(lang for _, lang in pairs)
            # A script counts for a language when it is a writing habit of that language (10%
            # of its examples), not the odd English word in a Thai pack.
            major = {lang for lang, n in in_script.items() if n >= 0.10 * per_language[lang]}
            if len(major) == 1:
                script_language[script] = major.pop()
                continue
            pairs = [(t, lang) for t, lang in pairs if lang in major]
            classifiers[script] = _fit([t for t, _ in pairs], [lang for _, lang in pairs])
        return cls(script_language, classifiers, fallback, priors)

    def identify(self, text: str) -> LanguageGuess:
        script, share = _dominant_script(text)
        if script is None:
            return LanguageGuess(self.fallback, 0.0, "")
        if script in self.classifiers:
            clf = self.classifiers[script]
            probabilities = clf.predict_proba([text])[0]
            weights = np.array([self.priors.get(c, 1.0) for c in clf.classes_])
            probabilities = probabilities * weights / float(probabilities @ weights)
            best = int(probabilities.argmax())
            return LanguageGuess(
                str(clf.classes_[best]), float(probabilities[best]) * share, script
            )
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
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(1, 4),
                    lowercase=True,
                    sublinear_tf=True,
                    min_df=1,
                ),
            ),
            (
                "words",
                TfidfVectorizer(
                    analyzer="word", token_pattern=r"(?u)\b\w+\b", lowercase=True, sublinear_tf=True
                ),
            ),
        ]
    )
    model = make_pipeline(
        features, LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
    )
    model.fit(texts, labels)
    return model
