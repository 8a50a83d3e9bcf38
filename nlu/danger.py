"""Danger detection: is the worker (or someone near them) in danger now, and of what kind?

Measured like a safety system, by recall first (``make bench-danger``, docs/benchmarks.md). Two
parts, both learnt from the locale packs, so adding a language stays adding a folder:

1. **The lexicon** (``locales/<code>/danger.yml``, format in docs/danger-lexicon-format.md):
   phrases for each danger kind, in native script and as workers type them, including the
   indirect ways people speak of suicide. A phrase is matched on the folded message (lower case,
   Latin accents removed, punctuation as spaces). A phrase inside a pack's ``not_danger`` phrase
   ("this job is killing me") does not count, and a message that says the danger is over
   or is not about now (``not_now``: "now I am safe", "if a worker is locked in...") makes its
   danger phrases a weak signal only.
   ``weak`` phrases (hopelessness, farewells) are not
   danger alone; the dialogue counts two in a row as danger (``actions.dialogue``).
2. **The classifier**: character n-grams (2-5, within words) and word 1-2 grams into a logistic
   regression trained on danger (every pack's ``examples.danger``, lexicon phrases, labelled
   danger messages of ``danger_examples.tsv`` and the ``emergency`` intent's examples) against
   hard negatives (``examples.safe``, ``not_danger`` phrases, labelled safe messages) and every
   other intent's examples. A message in Latin letters also has its n-grams in its language's
   block (``latin_block``): romanized Bengali, Vietnamese without accents and Malay share
   letters, not meanings. A second logistic regression names the kind.
3. **The encoder's opinion**: the same messages embedded by a multilingual encoder
   (multilingual-e5-small, ``nlu.embedding``, weights inside the installed package) into a small
   neural network (one hidden layer, ``EMBED_SEEDS`` of them averaged). It knows that "I was
   locked in last year, now I am fine" is not "they lock me in", which n-grams do not. The
   score is a weighted geometric mean, ``p_ngrams ** (1 - w) * p_encoder ** w``
   (``encoder_weight``): on the cross-validation it cut false alarms on hard negatives from
   0.207 to 0.134 and ordinary messages flagged from 0.091 to 0.048, at the same recall
   (docs/benchmarks.md).

The threshold per language is cross-validated on the labelled messages, recall first
(``tests/bench/danger_cv.py``), never set on the evaluation set.

``assess(text)`` gives ``Assessment(score, kind, weak, source)``: ``score`` in 0..1 (a lexicon
phrase gives at least ``LEXICON_SCORE``), ``kind`` one of ``KINDS`` or None. What is learnt is
stored as JSON (no pickle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import regex
import yaml

from nlu.gazetteer import fold
from nlu.script import ascii_digits, burmese_spelling, script_of
from nlu.weights import for_sparse_rows

KINDS = (
    "suicide",
    "violence",
    "sexual",
    "confinement",
    "trafficking",
    "medical",
    "deprivation",
    "fire",
    "third_party",
    "child",
)
LEXICON_FILE = "danger.yml"
ROWS_FILE = "danger_examples.tsv"  # whole messages by independent writers, labelled (see below)
SAFE_KINDS = ("figure_of_speech", "past", "law_question", "documents", "homesick", "other_topic")
DANGER_FORMS = ("direct", "subtle", "indirect")
LEXICON_SCORE = 0.95  # a danger phrase, outside any not_danger phrase
THRESHOLD = 0.3  # classifier probability that counts as danger, for a pack without its own
WEAK_THRESHOLD = 0.2  # below THRESHOLD, at least this: a weak signal
# A lexicon phrase is danger unless the classifier is this sure it is not ("my wife will kill me
# if I forget the gift haha"); below it, the phrase is a weak signal (two in a row are danger).
# Cross-validated on the five rounds of labelled messages, thresholds picked again for each
# (held-out, target recall 0.96): 0.05 -> 0.15 kept recall (0.954 both) and lowered false alarms
# 0.104 -> 0.092, in both folds, most on danger that is over (0.158 -> 0.113); 0.1 gave 0.098,
# 0.2 0.099, no floor (phrases alone) 0.101, every phrase danger 0.171 (docs/benchmarks.md).
LEXICON_FLOOR = 0.15
# Every other intent's examples (ordinary messages: "my salary has not come", "bye") weigh this
# much against danger: lower, and the classifier flags ordinary complaints (cross-validated:
# 1.0 flagged 10.9 % of ordinary messages, 2.0 9.0 %, at the same recall and 0.004 more false
# alarms on hard negatives; 3.0 8.7 % and 0.019 more).
OTHERS_WEIGHT = 2.0
SAFE_WEIGHT = 2.0  # hard negatives (``examples.safe``, ``not_danger``) against danger
ROWS_WEIGHT = 3.0  # a labelled message of ``danger_examples.tsv``, against a phrase or an example
C = 5.0  # the danger classifier's inverse regularisation
# The encoder's network: hidden units, L2 penalty, epochs, and the seeds of the ones averaged
# (cross-validated: one network's false alarms moved 0.140-0.149 with the seed; three average it).
EMBED_HIDDEN = 256
EMBED_ALPHA = 3e-3
EMBED_EPOCHS = 60
EMBED_SEEDS = (0, 1, 2)
# The score is p_ngrams ** (1 - w) * p_encoder ** w. The encoder reads plain ASCII letters worse
# in a language usually written otherwise (romanized Bengali and Nepali, Vietnamese without
# accents: cross-validated false alarms 0.41, 0.22 and 0.38 against 0.06, 0.06 and 0.20 for the
# same languages in their script), so there it weighs less (cross-validated: 0.149 -> 0.134).
ENCODER_WEIGHT = 0.5
ENCODER_WEIGHT_ASCII = 0.25
# When the n-grams alone are this sure, the encoder cannot lower the score: "majikan kurung aku
# dalam rumah" (locked in the house) scored 0.95 by its n-grams and 0.2 combined, the encoder
# having seen no such Malay. Cross-validated on six rounds (held-out, target recall 0.96, the
# same stored parts): false alarms 0.085 -> 0.081, ordinary messages flagged 6.4 % -> 5.4 %,
# recall 0.961 -> 0.960; 0.75-0.9 all gave 0.081-0.083 (docs/benchmarks.md).
NGRAMS_ENOUGH = 0.8
NON_ASCII_SHARE = 0.25  # a language whose pack examples have this share with non-ASCII letters
FORMAT_VERSION = 2  # 2: the n-grams' language blocks (``latin_block``); 1 is read too
# Every language typed in Latin letters shares its n-grams: romanized Bengali and Nepali,
# Vietnamese without accents, Indonesian, Malay and English. A message in Latin letters also has
# its n-grams in its language's block, so that each language can weigh them its own way.
# Indonesian and Malay are one block (the language identifier mixes them up). Cross-validated on
# six rounds (tests/bench/danger_cv.py, docs/benchmarks.md): held-out false alarms 0.082 ->
# 0.075, recall 0.960 -> 0.958, ordinary messages flagged 5.3 % both; Vietnamese 0.151 -> 0.120,
# Bengali 0.139 -> 0.120, Nepali 0.102 -> 0.110.
LATIN_BLOCKS = {"id": "bahasa", "ms": "bahasa"}

# Scripts without spaces between words: a phrase matches anywhere.
_NO_SPACES = ("Myanmar", "Thai")
_GAP = r"(?:\W+\w+){0,3}?\W+"  # `..`: up to 3 other words


class LexiconError(ValueError):
    """A danger lexicon that cannot be used, with the file and the reason."""


# Malay and Indonesian say "I" in many ways (saya, aku, aq, gw, gue, sy): one word for matching
# and for the n-grams, so that a phrase written with one ("kurung sy") matches them all
# ("majikan kurung aku"). None of them is a word of another pack's Latin-script language.
FIRST_PERSON = {"saya": "sy", "aku": "sy", "aq": "sy", "gw": "sy", "gue": "sy"}


def normalize_for_matching(text: str) -> str:
    """Folded (lower case, Latin accents removed), punctuation as single spaces, Malay and
    Indonesian "I" as one word (``FIRST_PERSON``)."""
    # "เเ" (two sara e) is how many type "แ" (sara ae) in Thai; Burmese: burmese_spelling
    text = ascii_digits(unicodedata.normalize("NFC", text)).replace("\u0e40\u0e40", "\u0e41")
    text = burmese_spelling(text)
    folded = fold(text)
    return " ".join(FIRST_PERSON.get(w, w) for w in regex.sub(r"[^\w\s]+", " ", folded).split())


def _phrase_pattern(phrase: str) -> str | None:
    norm = phrase.strip()
    if not norm:
        return None
    parts = [p.strip() for p in norm.split("..")]
    pieces = []
    for part in parts:
        words = []
        for raw in part.split():
            open_end = raw.endswith("*")
            for word in normalize_for_matching(raw.rstrip("*")).split():
                words.append(regex.escape(word))
            if open_end and words:
                words[-1] += r"\w*"
        if not words:
            return None
        pieces.append(words)
    script = script_of(normalize_for_matching(norm.replace("*", "").replace("..", " ")))
    # Thai and Burmese put no spaces between words: a space in a phrase may be absent in a message.
    joiner = r"\W*" if script in _NO_SPACES else r"\W+"
    body = _GAP.join(joiner.join(words) for words in pieces)
    if script in _NO_SPACES:
        return body
    if script == "Latn":
        return rf"(?<!\w){body}(?!\w)"
    return rf"(?<!\w){body}"  # Bengali, Devanagari...: any ending


@dataclasses.dataclass
class Match:
    kind: str  # a danger kind, "weak" or "not_danger"
    phrase: str
    start: int
    end: int


def _required_word(phrase: str) -> str:
    """The phrase's longest word as it stands in a normalised message: a message without it
    cannot match the phrase's pattern (every word of a phrase is matched literally)."""
    words = [
        word
        for part in phrase.strip().split("..")
        for raw in part.split()
        for word in normalize_for_matching(raw.rstrip("*")).split()
    ]
    return max(words, key=len) if words else ""


class Lexicon:
    """Every pack's phrases: one pattern per phrase, tried only on a message that holds the
    phrase's longest word.

    What it finds is what one alternation of all a kind's phrases (longest pattern first) finds
    with overlapped matching: at each position where some phrase matches, the first of them in
    that order (``tests/test_danger.py`` compares the two). Trying every phrase at every position
    cost 12.6 ms a message; the word check leaves a few phrases to try (0.8 ms; 3,000 pack
    messages, docs/benchmarks.md).
    """

    def __init__(self, phrases: dict[str, list[str]]) -> None:
        self.phrases = {k: sorted(set(v)) for k, v in phrases.items() if v}
        # kind -> [(required word, pattern)], in the alternation's order
        self._patterns: dict[str, list[tuple[str, regex.Pattern]]] = {}
        for kind, items in self.phrases.items():
            words: dict[str, str] = {}
            for item in items:
                pattern = _phrase_pattern(item)
                if pattern:  # one pattern, one list of words: the same longest word
                    words.setdefault(pattern, _required_word(item))
            ordered = sorted(words, key=len, reverse=True)
            if ordered:
                self._patterns[kind] = [(words[p], regex.compile(p)) for p in ordered]

    def matches(self, text: str) -> list[Match]:
        norm = normalize_for_matching(text)
        found = []
        for kind, patterns in self._patterns.items():
            first: dict[int, regex.Match] = {}  # start -> the first phrase in order there
            for word, pattern in patterns:
                if word not in norm:
                    continue
                for m in pattern.finditer(norm, overlapped=True):
                    first.setdefault(m.start(), m)
            found += [Match(kind, m.group(), m.start(), m.end()) for _, m in sorted(first.items())]
        return found

    def danger_matches(self, text: str) -> tuple[list[Match], bool]:
        """Danger-kind matches outside every ``not_danger`` phrase, and whether a weak phrase
        matched (also outside them). A message not about danger now (``not_now``) has no
        danger matches, only a weak signal."""
        danger, weak, _ = self.assess_phrases(text)
        return danger, weak

    def assess_phrases(self, text: str) -> tuple[list[Match], bool, bool]:
        """``danger_matches`` and whether a ``not_now`` phrase matched."""
        found = self.matches(text)
        shields = [(m.start, m.end) for m in found if m.kind == "not_danger"]

        def shielded(m: Match) -> bool:
            return any(s <= m.start and m.end <= e for s, e in shields)

        danger = [m for m in found if m.kind in KINDS and not shielded(m)]
        weak = any(m.kind == "weak" and not shielded(m) for m in found)
        over = any(m.kind == "not_now" for m in found)
        if danger and over:
            # "last year he beat me, now I am safe": a weak signal, not an alarm
            return [], True, True
        return danger, weak, over


@dataclasses.dataclass(frozen=True)
class PackLexicon:
    code: str
    kinds: dict[str, list[str]]
    weak: list[str]
    not_danger: list[str]
    not_now: list[str]
    danger_examples: dict[str, list[str]]
    safe_examples: list[str]
    # ``danger_examples.tsv``: whole messages written by writers who saw neither the lexicons
    # nor the evaluation set (label, kind, variant, form, text), weighted ROWS_WEIGHT.
    danger_rows: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    safe_rows: list[str] = dataclasses.field(default_factory=list)


def load_rows(path: Path | str) -> list[dict]:
    """A ``danger_examples.tsv``: ``label<TAB>kind<TAB>variant<TAB>form<TAB>text`` per line
    (``#`` starts a comment line); LexiconError naming the line when one is malformed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LexiconError(f"{path}: cannot read: {exc}") from exc
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 5:
            raise LexiconError(f"{path}:{n}: expected label, kind, variant, form and text")
        label, kind, variant, form, text = (x.strip() for x in parts)
        if label == "danger":
            if kind not in KINDS or form not in DANGER_FORMS:
                raise LexiconError(f"{path}:{n}: unknown danger kind {kind!r} or form {form!r}")
        elif label == "safe":
            if kind not in SAFE_KINDS or form != "-":
                raise LexiconError(f"{path}:{n}: unknown safe kind {kind!r} (or form not '-')")
        else:
            raise LexiconError(f"{path}:{n}: label must be danger or safe, not {label!r}")
        if not text or not variant:
            raise LexiconError(f"{path}:{n}: empty variant or text")
        rows.append({"label": label, "kind": kind, "variant": variant, "form": form, "text": text})
    return rows


def load_pack_lexicon(pack_dir: Path | str, rows: bool = True) -> PackLexicon | None:
    """A pack's ``danger.yml`` (and its ``danger_examples.tsv`` unless ``rows`` is false), or
    None when it has none; LexiconError when it is malformed."""
    pack_dir = Path(pack_dir)
    path = pack_dir / LEXICON_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LexiconError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise LexiconError(f"{path}: must be a mapping")

    def strings(value, where: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(x, (str, int)) for x in value):
            raise LexiconError(f"{path}: {where} must be a list of phrases")
        return [str(x) for x in value if str(x).strip()]

    kinds = data.get("kinds") or {}
    examples = data.get("examples") or {}
    danger_examples = examples.get("danger") or {}
    for key in list(kinds) + list(danger_examples):
        if key not in KINDS:
            raise LexiconError(f"{path}: unknown danger kind {key!r} (kinds: {', '.join(KINDS)})")
    return PackLexicon(
        code=pack_dir.name,
        kinds={k: strings(kinds.get(k), f"kinds.{k}") for k in KINDS},
        weak=strings(data.get("weak"), "weak"),
        not_danger=strings(data.get("not_danger"), "not_danger"),
        not_now=strings(data.get("not_now"), "not_now"),
        danger_examples={k: strings(danger_examples.get(k), f"examples.danger.{k}") for k in KINDS},
        safe_examples=strings(examples.get("safe"), "examples.safe"),
        **(_rows_of(pack_dir / ROWS_FILE) if rows else {}),
    )


def _rows_of(path: Path) -> dict:
    found = load_rows(path) if path.is_file() else []
    danger_rows: dict[str, list[str]] = {k: [] for k in KINDS}
    for r in found:
        if r["label"] == "danger":
            danger_rows[r["kind"]].append(r["text"])
    return {
        "danger_rows": danger_rows,
        "safe_rows": [r["text"] for r in found if r["label"] == "safe"],
    }


# What `helpline locales check` asks of every pack's lexicon.
MIN_PHRASES_PER_KIND = 5
MIN_SUICIDE_PHRASES = 20
MIN_EXAMPLES_PER_KIND = 5
MIN_SAFE_EXAMPLES = 30


def check_pack_lexicon(pack_dir: Path | str) -> list[str]:
    """Problems with a pack's danger lexicon, as lines for `helpline locales check`."""
    try:
        lexicon = load_pack_lexicon(pack_dir)
    except LexiconError as exc:
        return [str(exc)]
    if lexicon is None:
        return [f"{LEXICON_FILE}: missing (every pack needs a danger lexicon)"]
    problems = []
    for kind in KINDS:
        need = MIN_SUICIDE_PHRASES if kind == "suicide" else MIN_PHRASES_PER_KIND
        if len(lexicon.kinds[kind]) < need:
            problems.append(
                f"{LEXICON_FILE}: kinds.{kind} has {len(lexicon.kinds[kind])} phrases, need {need}"
            )
        if len(lexicon.danger_examples[kind]) < MIN_EXAMPLES_PER_KIND:
            problems.append(
                f"{LEXICON_FILE}: examples.danger.{kind} has {len(lexicon.danger_examples[kind])}"
                f" messages, need {MIN_EXAMPLES_PER_KIND}"
            )
    if len(lexicon.safe_examples) < MIN_SAFE_EXAMPLES:
        problems.append(
            f"{LEXICON_FILE}: examples.safe has {len(lexicon.safe_examples)} messages,"
            f" need {MIN_SAFE_EXAMPLES}"
        )
    if not lexicon.weak:
        problems.append(f"{LEXICON_FILE}: no weak phrases")
    if not lexicon.not_danger:
        problems.append(f"{LEXICON_FILE}: no not_danger phrases")
    for kind, phrases in [*lexicon.kinds.items(), ("weak", lexicon.weak)]:
        for phrase in phrases:
            if _phrase_pattern(phrase) is None:
                problems.append(f"{LEXICON_FILE}: {kind}: {phrase!r} has nothing to match")
            elif len(normalize_for_matching(phrase.replace("*", "").replace("..", " "))) < 3:
                problems.append(f"{LEXICON_FILE}: {kind}: {phrase!r} is too short to be safe")
    # A phrase that is danger here and harmless there would teach both.
    danger = {normalize_for_matching(p) for ps in lexicon.kinds.values() for p in ps}
    for phrase in lexicon.not_danger:
        if normalize_for_matching(phrase) in danger:
            problems.append(f"{LEXICON_FILE}: {phrase!r} is both danger and not_danger")
    return problems


@dataclasses.dataclass(frozen=True)
class Assessment:
    score: float  # 0..1; >= threshold exactly when danger
    kind: str | None  # a danger kind, when score >= threshold or a weak signal
    weak: bool  # a weak signal (hopelessness, farewell) below the threshold
    source: str  # "lexicon", "classifier" or "none"
    threshold: float = THRESHOLD

    @property
    def danger(self) -> bool:
        return self.source in ("lexicon", "classifier")


# The classifier alone needs this much text: on "no", "bye" or "help" its n-grams say nothing
# (it flagged 17% of the held-out set's bare "no"s). Short messages count by their phrases only.
MIN_WORDS = 3
MIN_LETTERS_UNSPACED = 8  # Thai and Burmese, which put no spaces between words


def _long_enough(text: str) -> bool:
    norm = normalize_for_matching(text)
    unspaced = sum(1 for ch in norm if script_of(ch) in _NO_SPACES)
    return len(norm.split()) >= MIN_WORDS or unspaced >= MIN_LETTERS_UNSPACED


def decide(
    p: float,
    matched: bool,
    over: bool,
    long_enough: bool,
    threshold: float,
    lexicon_floor: float = LEXICON_FLOOR,
) -> str | None:
    """Which part finds danger, ``"lexicon"`` or ``"classifier"``, or None: a danger phrase
    unless the classifier is ``lexicon_floor`` sure it is not; else the classifier's ``p`` at the
    threshold, for a message long enough and not about danger that is over. Used by ``assess``
    and by the threshold search (tests/bench/danger_cv.py), which reuses stored scores."""
    if matched and p >= lexicon_floor:
        return "lexicon"
    if p >= threshold and not over and long_enough:
        return "classifier"
    return None


def combine(p_ngrams: float, p_encoder: float, w: float) -> float:
    """The classifier's score from its two parts: a geometric mean with the encoder weighing
    ``w``, unless the n-grams alone are ``NGRAMS_ENOUGH`` sure. Used by ``DangerDetector`` and by
    the threshold search (tests/bench/danger_cv.py), which recombines stored parts."""
    combined = float(p_ngrams ** (1.0 - w) * p_encoder**w)
    return max(combined, p_ngrams) if p_ngrams >= NGRAMS_ENOUGH else combined


def _non_ascii(text: str) -> bool:
    """Has a letter outside ASCII: Bengali, Burmese, Thai script or Vietnamese accents."""
    return any(ch.isalpha() and ord(ch) > 127 for ch in text)


def _features(texts: Iterable[str]):
    return [normalize_for_matching(t) for t in texts]


def latin_block(text: str, language: str | None) -> str | None:
    """The n-grams' language block of a message in Latin letters (``LATIN_BLOCKS``); None for
    one with letters of another script, or of no known language."""
    if not language or _non_ascii(fold(text)):
        return None
    return LATIN_BLOCKS.get(language, language)


def _with_blocks(x, blocks: list[str | None], names: list[str]):
    """``x`` with each row's features again in its block's columns (one block a name)."""
    from scipy.sparse import csr_matrix, hstack

    if not names:
        return x.tocsr()
    index = {name: i for i, name in enumerate(names)}
    coo = x.tocoo()
    of_row = np.array([index.get(b, -1) if b else -1 for b in blocks])
    block = of_row[coo.row]
    keep = block >= 0
    width = x.shape[1]
    extra = csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep] + width * block[keep])),
        shape=(x.shape[0], width * len(names)),
    )
    return hstack([x.tocsr(), extra]).tocsr()


class Features:
    """Character n-grams within words and word 1-2 grams (tf-idf), side by side; stored as
    JSON (each part's n-grams and idf)."""

    def __init__(self, params: list[dict] | None = None) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.params = [dict(p) for p in (params or VECTORIZERS)]
        self.parts = [TfidfVectorizer(**p) for p in self.params]

    def fit_transform(self, texts: list[str]):
        from scipy.sparse import hstack

        return hstack([v.fit_transform(texts) for v in self.parts]).tocsr()

    def transform(self, texts: list[str]):
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in self.parts]).tocsr()

    def __len__(self) -> int:
        return sum(len(v.vocabulary_) for v in self.parts)

    def to_json(self) -> list[dict]:
        out = []
        for params, v in zip(self.params, self.parts, strict=True):
            terms = sorted(v.vocabulary_.items(), key=lambda item: item[1])
            out.append(
                {
                    "params": {
                        k: list(x) if isinstance(x, tuple) else x for k, x in params.items()
                    },
                    "terms": [t for t, _ in terms],
                    "idf": [round(float(x), 5) for x in v.idf_],
                }
            )
        return out

    @classmethod
    def from_json(cls, data: list[dict]) -> Features:
        params = [
            {k: tuple(x) if k == "ngram_range" else x for k, x in part["params"].items()}
            for part in data
        ]
        features = cls(params)
        for v, part in zip(features.parts, data, strict=True):
            v.vocabulary_ = {t: i for i, t in enumerate(part["terms"])}
            v.idf_ = np.array(part["idf"], dtype=float)
        return features


class DangerDetector:
    """The lexicon and the classifiers, trained from the packs; ``assess`` one message."""

    def __init__(
        self,
        lexicon: Lexicon,
        features: Features,
        coef: np.ndarray,
        intercept: float,
        kind_coef: np.ndarray,
        kind_intercept: np.ndarray,
        kind_labels: list[str],
        threshold: float = THRESHOLD,
        weak_threshold: float = WEAK_THRESHOLD,
        lexicon_floor: float = LEXICON_FLOOR,
        thresholds: dict[str, float] | None = None,
        encoder: EncoderNetworks | None = None,
        non_ascii: Iterable[str] = (),
        block_coef: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.encoder = encoder
        self.block_coef = dict(block_coef or {})  # ``latin_block`` -> its n-grams' weights
        self.non_ascii = sorted(set(non_ascii))  # languages usually written with non-ASCII
        self.lexicon = lexicon
        self.lexicon_floor = lexicon_floor
        # Per language (a pack's ``danger_threshold`` in pack.yml, set for recall on the dev set):
        # one classifier serves every language, and its scores are not equally calibrated.
        self.thresholds = dict(thresholds or {})
        self.threshold = threshold
        self.weak_threshold = weak_threshold
        self.features = features
        self.coef = coef
        self.intercept = intercept
        self.kind_coef = for_sparse_rows(kind_coef)  # x @ kind_coef.T without a copy
        self.kind_intercept = kind_intercept
        self.kind_labels = kind_labels

    # --- training --------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        lexicons: list[PackLexicon],
        intent_examples: list[tuple[str, str] | tuple[str, str, str]],
        threshold: float = THRESHOLD,
        weak_threshold: float = WEAK_THRESHOLD,
        lexicon_floor: float = LEXICON_FLOOR,
        thresholds: dict[str, float] | None = None,
        embed: bool = True,
    ) -> DangerDetector:
        """``intent_examples``: ``(text, intent)`` or ``(text, intent, language)`` of every pack;
        ``emergency`` ones count as danger, every other intent as not danger. ``embed=False``:
        n-grams alone (tests about code, which need no encoder)."""
        from sklearn.linear_model import LogisticRegression

        phrases: dict[str, list[str]] = {k: [] for k in (*KINDS, "weak", "not_danger", "not_now")}
        danger_texts: list[str] = []
        kinds: list[str] = []
        safe_texts: list[str] = []
        danger_rows: list[str] = []
        row_kinds: list[str] = []
        safe_rows: list[str] = []
        of = {"danger_texts": [], "danger_rows": [], "safe_texts": [], "safe_rows": []}
        for lex in lexicons:
            for kind, texts in lex.danger_rows.items():
                danger_rows += texts
                row_kinds += [kind] * len(texts)
            safe_rows += lex.safe_rows
            for kind in KINDS:
                phrases[kind] += lex.kinds[kind]
                for text in lex.danger_examples[kind]:
                    danger_texts.append(text)
                    kinds.append(kind)
                for phrase in lex.kinds[kind]:
                    danger_texts.append(phrase.replace("*", "").replace("..", " "))
                    kinds.append(kind)
            phrases["weak"] += lex.weak
            phrases["not_danger"] += lex.not_danger
            phrases["not_now"] += lex.not_now
            safe_texts += lex.safe_examples + lex.not_danger
            # Each text's language: this lexicon's code for what it just added to each list.
            for name, texts in (("danger_texts", danger_texts), ("danger_rows", danger_rows),
                                ("safe_texts", safe_texts), ("safe_rows", safe_rows)):  # fmt: skip
                of[name] += [lex.code] * (len(texts) - len(of[name]))
        examples = [(e[0], e[1], e[2] if len(e) > 2 else None) for e in intent_examples]
        emergency = [(t, lang) for t, i, lang in examples if i == "emergency"]
        others = [(t, lang) for t, i, lang in examples if i != "emergency"]
        texts = (
            danger_texts + danger_rows + [t for t, _ in emergency]
            + safe_texts + safe_rows + [t for t, _ in others]
        )  # fmt: skip
        languages = (
            of["danger_texts"] + of["danger_rows"] + [lang for _, lang in emergency]
            + of["safe_texts"] + of["safe_rows"] + [lang for _, lang in others]
        )  # fmt: skip
        blocks = [latin_block(t, lang) for t, lang in zip(texts, languages, strict=True)]
        names = sorted({b for b in blocks if b})
        n_danger = len(danger_texts) + len(danger_rows) + len(emergency)
        n_hard = len(safe_texts) + len(safe_rows)
        labels = np.array([1] * n_danger + [0] * (n_hard + len(others)))
        # Hard negatives count more than ordinary messages: they are what floods caseworkers.
        # Labelled whole messages count more than phrases and pack examples.
        weights = np.array(
            [1.0] * len(danger_texts)
            + [ROWS_WEIGHT] * len(danger_rows)
            + [1.0] * len(emergency)
            + [SAFE_WEIGHT] * len(safe_texts)
            + [SAFE_WEIGHT * ROWS_WEIGHT] * len(safe_rows)
            + [OTHERS_WEIGHT] * len(others)
        )
        features = Features()
        shared = features.fit_transform(_features(texts))
        x = _with_blocks(shared, blocks, names)
        # A second stage trained on danger against the hard negatives only, combined with this
        # one, lowered false alarms on hard negatives but doubled them on ordinary messages
        # (cross-validated, docs/benchmarks.md): one stage, with ordinary messages among the
        # negatives, is kept.
        clf = LogisticRegression(max_iter=3000, C=C, class_weight="balanced")
        clf.fit(x, labels, sample_weight=weights)
        width = shared.shape[1]
        block_coef = {
            name: clf.coef_[0][width * (i + 1) : width * (i + 2)] for i, name in enumerate(names)
        }
        xk = features.transform(_features(danger_texts + danger_rows))
        kind_clf = LogisticRegression(max_iter=2000, C=5.0)
        kind_clf.fit(xk, np.array(kinds + row_kinds))
        kind_coef, kind_intercept = kind_clf.coef_, kind_clf.intercept_
        if len(kind_clf.classes_) == 2:  # one row for two classes: make it one row a class
            kind_coef = np.vstack([-kind_coef[0], kind_coef[0]])
            kind_intercept = np.array([-kind_intercept[0], kind_intercept[0]])
        encoder = EncoderNetworks.train(texts, labels, weights) if embed else None
        non_ascii = []
        for lex in lexicons:
            own = [t for k in KINDS for t in lex.danger_examples[k]] + lex.safe_examples
            if own and sum(map(_non_ascii, own)) >= NON_ASCII_SHARE * len(own):
                non_ascii.append(lex.code)
        return cls(
            Lexicon(phrases),
            features,
            clf.coef_[0][:width],
            float(clf.intercept_[0]),
            kind_coef,
            kind_intercept,
            [str(c) for c in kind_clf.classes_],
            threshold,
            weak_threshold,
            lexicon_floor,
            thresholds,
            encoder,
            non_ascii,
            block_coef,
        )

    # --- inference -------------------------------------------------------------------------
    def _ngrams(self, text: str, language: str | None = None):
        x = self.features.transform(_features([text]))
        z = float(x @ self.coef + self.intercept)
        block = self.block_coef.get(latin_block(text, language) or "")
        if block is not None:
            z += float(x @ block)
        p = 1.0 / (1.0 + np.exp(-z))
        kind_scores = x @ self.kind_coef.T + self.kind_intercept
        kind = self.kind_labels[int(np.argmax(kind_scores))] if self.kind_labels else None
        return float(p), kind

    def encoder_weight(self, text: str, language: str | None) -> float:
        if self.encoder is None:
            return 0.0
        if language in self.non_ascii and not _non_ascii(text):
            return ENCODER_WEIGHT_ASCII
        return ENCODER_WEIGHT

    def _combine(self, p: float, text: str, w: float) -> float:
        if w == 0.0:
            return p
        return combine(p, self.encoder.probability(text), w)

    def probability(self, text: str, language: str | None = None) -> tuple[float, str | None]:
        """The danger score (n-grams and encoder combined) and the likeliest kind."""
        p, kind = self._ngrams(text, language)
        return self._combine(p, text, self.encoder_weight(text, language)), kind

    def threshold_for(self, language: str | None) -> float:
        return self.thresholds.get(language or "", self.threshold)

    def assess(self, text: str, language: str | None = None) -> Assessment:
        threshold = self.threshold_for(language)
        weak_threshold = min(self.weak_threshold, threshold * 0.67)
        if not isinstance(text, str) or not text.strip():
            return Assessment(0.0, None, False, "none", threshold)
        text = text[:4000]  # danger is said early; a huge message costs no more than this
        matches, weak, over = self.lexicon.assess_phrases(text)
        p, kind = self._ngrams(text, language)
        # The encoder only where it can change the outcome: the combined score is at most
        # p ** (1 - w), so below bar ** (1 / (1 - w)) it cannot reach the lowest bar that matters
        # (half of ordinary messages skip it; n-grams NGRAMS_ENOUGH sure never do). Then the score
        # reported is that bound.
        w = self.encoder_weight(text, language)
        bar = min(weak_threshold, self.lexicon_floor) if matches else weak_threshold
        if w == 0.0 or p >= bar ** (1.0 / (1.0 - w)):
            p = self._combine(p, text, w)
        else:
            p = float(p ** (1.0 - w))
        source = decide(p, bool(matches), over, _long_enough(text), threshold, self.lexicon_floor)
        if source == "lexicon":
            # The kind of the longest phrase: "my friend wants to die" is third_party.
            best = max(matches, key=lambda m: (m.end - m.start, m.kind == "suicide"))
            return Assessment(max(LEXICON_SCORE, p), best.kind, False, "lexicon", threshold)
        if source == "classifier":
            return Assessment(p, kind, False, "classifier", threshold)
        weak = weak or bool(matches) or p >= weak_threshold
        # Not danger (a figure of speech, or over): the score says so too.
        score = min(p, round(threshold * 0.99, 4))
        return Assessment(score, "suicide" if weak else None, weak, "none", threshold)

    # --- storage (JSON, no pickle) -----------------------------------------------------------
    def to_json(self) -> dict:
        def r(values) -> list[float]:
            return [round(float(v), 5) for v in values]

        return {
            "format": FORMAT_VERSION,
            "threshold": self.threshold,
            "weak_threshold": self.weak_threshold,
            "lexicon_floor": self.lexicon_floor,
            "thresholds": self.thresholds,
            "lexicon": self.lexicon.phrases,
            "features": self.features.to_json(),
            "coef": r(self.coef),
            "intercept": self.intercept,
            "kind_labels": self.kind_labels,
            "kind_coef": [r(row) for row in self.kind_coef],
            "kind_intercept": r(self.kind_intercept),
            "encoder": self.encoder.to_json() if self.encoder is not None else None,
            "non_ascii": self.non_ascii,
            # Sparse: a block weighs only the n-grams seen in its language's Latin messages.
            "blocks": {name: _sparse(values) for name, values in self.block_coef.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> DangerDetector:
        if data.get("format") not in (1, FORMAT_VERSION):
            raise ValueError(f"danger model format {data.get('format')!r} is not supported")
        width = len(data["coef"])
        return cls(
            Lexicon(data["lexicon"]),
            Features.from_json(data["features"]),
            np.array(data["coef"], dtype=float),
            float(data["intercept"]),
            np.array(data["kind_coef"], dtype=float).reshape(len(data["kind_labels"]), -1),
            np.array(data["kind_intercept"], dtype=float),
            list(data["kind_labels"]),
            float(data["threshold"]),
            float(data["weak_threshold"]),
            float(data["lexicon_floor"]),
            {str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
            EncoderNetworks.from_json(data["encoder"]) if data.get("encoder") else None,
            data.get("non_ascii") or (),
            {name: _dense(part, width) for name, part in (data.get("blocks") or {}).items()},
        )

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> DangerDetector:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


# Below this, a network's weight or Adam moment is set to zero after each step. Trained on the
# labelled messages, a third of the first layer's weights (units that stopped learning) decayed
# below 1e-308 after 35 epochs even in float64, and so did their gradients: subnormal numbers,
# which some CPUs (an Intel one here; not this AMD EPYC) multiply about 15 times slower, so that
# the same training took 4 minutes on one machine and over 20 on another. A weight this small
# changes no output (the model is stored to 5 decimals), and a unit that no longer learns stays
# one: on the training rows the predictions were the same to the last bit (docs/benchmarks.md);
# tests/test_danger.py checks that only values below it change.
FLUSH_BELOW = 1e-200


def _sparse(values: np.ndarray) -> dict:
    rounded = np.round(np.asarray(values, dtype=float), 5)
    (index,) = np.nonzero(rounded)
    return {"index": index.tolist(), "value": rounded[index].tolist()}


def _dense(part: dict, width: int) -> np.ndarray:
    values = np.zeros(width)
    values[np.asarray(part["index"], dtype=int)] = np.asarray(part["value"], dtype=float)
    return values


@contextlib.contextmanager
def _flushing_adam():
    """scikit-learn's MLP with an Adam optimizer that flushes tiny values to zero after each step
    (``FLUSH_BELOW``). scikit-learn builds its optimizer from a module global, replaced for the
    duration of the block (training runs on one thread)."""
    from sklearn.neural_network import _multilayer_perceptron as mlp
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    class FlushingAdam(AdamOptimizer):
        def update_params(self, params, grads):
            super().update_params(params, grads)
            for a in (*params, *self.ms, *self.vs):
                np.putmask(a, np.abs(a) < FLUSH_BELOW, 0.0)

    if mlp.AdamOptimizer is not AdamOptimizer:
        raise RuntimeError("scikit-learn's MLP optimizer is already replaced")
    mlp.AdamOptimizer = FlushingAdam
    try:
        yield
    finally:
        mlp.AdamOptimizer = AdamOptimizer


class EncoderNetworks:
    """Small networks on the encoder's embeddings (``nlu.embedding``): one hidden layer (ReLU),
    a logistic output, several seeds averaged. Trained with scikit-learn, run with numpy,
    stored as JSON."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> None:
        self.layers = layers  # (w1, b1, w2, b2) per network

    @classmethod
    def train(cls, texts: list[str], labels: np.ndarray, weights: np.ndarray) -> EncoderNetworks:
        from sklearn.neural_network import MLPClassifier

        from nlu.embedding import Embedder

        # In float64, values too small to matter flushed to zero (``FLUSH_BELOW``).
        x = np.asarray(Embedder.shared().vectors(list(texts)), dtype=np.float64)
        labels = np.asarray(labels)
        # scikit-learn's network takes no sample weights: a message weighing w appears w times,
        # and danger is repeated as much again as the classes are unbalanced.
        balance = np.where(labels == 1, (labels == 0).sum() / max(1, (labels == 1).sum()), 1.0)
        rows = np.repeat(
            np.arange(len(labels)), np.maximum(1, np.round(weights * balance)).astype(int)
        )
        layers = []
        for seed in EMBED_SEEDS:
            net = MLPClassifier(
                (EMBED_HIDDEN,), alpha=EMBED_ALPHA, max_iter=EMBED_EPOCHS, random_state=seed
            )
            with warnings.catch_warnings(), _flushing_adam():
                warnings.simplefilter("ignore")  # "not converged": the epochs are chosen
                net.fit(x[rows], labels[rows])
            w1, w2 = net.coefs_
            b1, b2 = net.intercepts_
            layers.append((w1, b1, w2[:, 0], float(b2[0])))
        return cls(layers)

    def probability(self, text: str) -> float:
        from nlu.embedding import Embedder

        return float(self.predict(Embedder.shared().embed([text]))[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros(len(x))
        for w1, b1, w2, b2 in self.layers:
            # einsum, not BLAS: numpy's OpenBLAS wakes a second thread for this small product,
            # which then spins beside the encoder's next message (measured: 35 ms of CPU
            # for a message against 17 ms).
            h = np.maximum(np.einsum("ij,jk->ik", x, w1) + b1, 0.0)
            z = np.einsum("ij,j->i", h, w2) + b2
            out += 1.0 / (1.0 + np.exp(-z))
        return out / len(self.layers)

    def to_json(self) -> list[dict]:
        def r(a) -> list:
            return np.round(np.asarray(a, dtype=float), 5).tolist()

        return [{"w1": r(w1), "b1": r(b1), "w2": r(w2), "b2": b2} for w1, b1, w2, b2 in self.layers]

    @classmethod
    def from_json(cls, data: list[dict]) -> EncoderNetworks:
        return cls(
            [
                (
                    np.array(n["w1"], dtype=np.float32),
                    np.array(n["b1"], dtype=np.float32),
                    np.array(n["w2"], dtype=np.float32),
                    float(n["b2"]),
                )
                for n in data
            ]
        )


# Character n-grams within words and word 1-2 grams, sublinear counts; min_df and max_features
# keep the model a few MB of JSON (tests/bench/danger_choice.py compares settings).
VECTORIZERS = (
    {
        "analyzer": "char_wb",
        "ngram_range": (2, 5),
        "sublinear_tf": True,
        "min_df": 2,
        "max_features": 60000,
    },
    {
        "analyzer": "word",
        "ngram_range": (1, 2),
        "sublinear_tf": True,
        "token_pattern": r"(?u)\b\w+\b",
        "max_features": 60000,
    },
)


def train_from_packs(
    locales_dir: Path | str,
    threshold: float = THRESHOLD,
    weak_threshold: float = WEAK_THRESHOLD,
    lexicon_floor: float = LEXICON_FLOOR,
) -> DangerDetector:
    from bot import locale_packs
    from nlu.script import normalize

    lexicons = []
    intent_examples = []
    thresholds = {}
    for pack in locale_packs.discover(locales_dir):
        if pack.meta.get("danger_threshold") is not None:
            thresholds[pack.code] = float(pack.meta["danger_threshold"])
        lexicon = load_pack_lexicon(pack.path)
        if lexicon is not None:
            lexicons.append(lexicon)
        for ex in locale_packs.read_examples(pack.nlu_files):
            intent_examples.append((normalize(ex.text)[0], ex.intent, pack.code))
    return DangerDetector.train(
        lexicons, intent_examples, threshold, weak_threshold, lexicon_floor, thresholds
    )
