"""Language identification for short, informal worker messages.

Two steps:

1. **Script**: letters are counted per script. A script that only one locale pack writes in
   (Bengali script -> ``bn``, Devanagari -> ``ne``, Myanmar -> ``my``, Thai -> ``th``) decides
   the language at once, with confidence equal to that script's share of the letters.
2. **Classifier per shared script**: where several packs write in one script (Latin: English,
   romanized Bengali and Nepali, Vietnamese with or without diacritics, Indonesian, Malay), a
   character n-gram logistic regression trained on those packs' examples decides. Vietnamese
   examples are also learnt with their diacritics removed, since many workers type them so.
   A language that defers to another (a pack's ``langid_defers_to``: Malay to Indonesian) first
   competes together with it, then the priors split them; a message made only of words the
   fallback language (English) uses at least as often is the fallback's, as in training.

Nothing here lists languages: the packs do. A new pack in a new script gets rule 1; a new pack in
a shared script joins that script's classifier.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import regex

from nlu.script import SCRIPT_PATTERNS, fold_latin, script_counts
from nlu.weights import lay_out

FALLBACK_LANGUAGE = "en"
# What skops may build from a classifier's file besides its defaults (scikit-learn estimators,
# numpy arrays, builtins): each TfidfVectorizer's sparse idf diagonal. Anything else is refused.
SKOPS_TRUSTED = ["scipy.sparse._csr.csr_matrix"]
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
        defers_to: dict[str, str] | None = None,
    ) -> None:
        self.script_language = script_language
        self.classifiers = classifiers
        self.fallback = fallback
        self.priors = priors or {}
        self.defers_to = defers_to or {}
        # word -> examples using it / examples, per language of a shared script (from training)
        self.word_rates: dict[str, dict[str, float]] = {}

    def save(self, path: Path) -> None:
        """``path`` as JSON and each classifier in a skops file beside it: never a pickle
        (``nlu.components.pack_trained``)."""
        import skops.io as sio

        for script, clf in self.classifiers.items():
            sio.dump(clf, _classifier_file(path, script), compression=zipfile.ZIP_DEFLATED)
        data = {
            "script_language": self.script_language,
            "classifiers": sorted(self.classifiers),
            "fallback": self.fallback,
            "priors": self.priors,
            "defers_to": self.defers_to,
            "word_rates": self.word_rates,
        }
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LanguageIdentifier:
        import skops.io as sio

        data = json.loads(path.read_text(encoding="utf-8"))
        classifiers = {
            script: lay_out(sio.load(_classifier_file(path, script), trusted=SKOPS_TRUSTED))
            for script in data["classifiers"]
        }
        identifier = cls(
            data["script_language"],
            classifiers,
            data["fallback"],
            data["priors"],
            data["defers_to"],
        )
        identifier.word_rates = data["word_rates"]
        return identifier

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
        rates = {
            lang: {w: n / max(totals[lang], 1) for w, n in counts.items()}
            for lang, counts in word_counts.items()
        }

        def belongs_to(word: str, target: str, language: str) -> bool:
            return _belongs_to(rates, word, target, language)

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
        identifier = cls(script_language, classifiers, fallback, priors, defers_to)
        shared = {str(c) for clf in classifiers.values() for c in clf.classes_}
        identifier.word_rates = {lang: rates[lang] for lang in shared if lang in rates}
        return identifier

    def identify(self, text: str) -> LanguageGuess:
        script, share = _dominant_script(text)
        if script is None:
            return LanguageGuess(self.fallback, 0.0, "")
        if script in self.classifiers:
            clf = self.classifiers[script]
            classes = [str(c) for c in clf.classes_]
            raw = clf.predict_proba([text])[0]
            best = classes.index(self._defer(self._decide(classes, raw), text, classes))
            weights = np.array([self.priors.get(c, 1.0) for c in classes])
            weighted = raw * weights / float(raw @ weights)
            return LanguageGuess(classes[best], float(weighted[best]) * share, script)
        if script in self.script_language:
            return LanguageGuess(self.script_language[script], share, script)
        if "Latn" in self.classifiers:  # a script no pack writes in: the best we can do
            guess = self.identify(strip_diacritics(text))
            return LanguageGuess(guess.language, 0.0, script)
        return LanguageGuess(self.fallback, 0.0, script)

    def _decide(self, classes: list[str], raw: np.ndarray) -> str:
        """The language, in two steps. A language that defers to another (Malay to Indonesian)
        first competes together with it, their probabilities added, against the others: a
        message that is surely Bahasa is not lost to English because it is unclear which
        Bahasa. Then the priors decide between them, and between every other language."""
        p = dict(zip(classes, (float(x) for x in raw), strict=True))
        group = {c: self.defers_to[c] if self.defers_to.get(c) in p else c for c in p}
        mass: dict[str, float] = defaultdict(float)
        for c, head in group.items():
            mass[head] += p[c] * self.priors.get(head, 1.0)
        head = max(mass, key=mass.get)
        members = [c for c in classes if group[c] == head]
        return max(members, key=lambda c: p[c] * self.priors.get(c, 1.0))

    def _defer(self, language: str, text: str, classes: list[str]) -> str:
        """As in training: a message whose every word is at least as common in the language
        ``language`` defers to (Malay: Indonesian), or else in the fallback (English), is that
        language's. "ok", "menu", "hello sir" are English whichever pack's examples use them
        too; "namaste", "tq", "ok la" are not."""
        words = _words(text)
        seen = {language}
        while words and language != self.fallback:
            for target in (self.defers_to.get(language), self.fallback):
                if (
                    target in classes
                    and target not in seen
                    and all(_belongs_to(self.word_rates, w, target, language) for w in words)
                ):
                    seen.add(target)
                    language = target
                    break
            else:
                break
        return language


def _belongs_to(rates: dict[str, dict[str, float]], word: str, target: str, language: str) -> bool:
    """``word`` is at least as common in ``target``'s examples as in ``language``'s."""
    theirs = rates.get(target, {}).get(word, 0.0)
    return theirs > 0 and theirs >= rates.get(language, {}).get(word, 0.0)


def _classifier_file(path: Path, script: str) -> Path:
    return path.with_name(f"{path.stem}.{script}.skops")


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
