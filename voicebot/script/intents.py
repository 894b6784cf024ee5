"""Intent matching that survives ASR errors, word forms and negation.

Text is normalised into tokens that carry a stem and a polarity: the word after
"not"/"не" is negated, and a negated token never matches a plain one ("no"/"нет"
negate softly: see PLAIN/SOFT/HARD).
So "not interested" can never match the phrase "interested", and "нет, не
интересно" can never match "интересно". Tokens match fuzzily (rapidfuzz) so a
misrecognised "intrested" still counts; stems (snowball, English and Russian)
make "interesting"/"interested" and "перезвоните"/"перезвонить" the same word.

A phrase scores how much of it the utterance covers (weighted: function words
count little), plus a little for how much of the utterance it explains, with
the words after "but"/"но" counting double: "yes, but not now" is a "not now".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import snowballstemmer
from rapidfuzz import fuzz, process

_STEMMERS = {"en": "english", "ru": "russian"}

_CONTRACTIONS = [
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"\bi'm\b"), "i am"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'d\b"), " would"),
    (re.compile(r"\b(it|that|what|who|there|he|she)'s\b"), r"\1 is"),
]
# ASR often drops the apostrophe: "dont", "im".
_NO_APOSTROPHE = {
    "dont": "do not",
    "doesnt": "does not",
    "didnt": "did not",
    "cant": "can not",
    "wont": "will not",
    "isnt": "is not",
    "arent": "are not",
    "im": "i am",
    "wasnt": "was not",
    "havent": "have not",
}

# Polarity of a token. A hard negation ("not", "не") is the opposite of the
# plain word: a phrase said negated is vetoed. A soft one comes from "no"/"нет"
# right before a word: "no time" is a negation, but ASR drops the comma in
# "no, call me later", so a soft negation only weakens a plain match.
PLAIN, SOFT, HARD = 0, 1, 2
_SOFT_FACTOR = 0.75

# Words that negate the next content word of their clause (function words such
# as "really", "very", "очень" are skipped: "not really interested").
_NEGATORS_HARD = {"en": {"not", "never", "neither", "nor", "without"}, "ru": {"не", "ни", "никогда", "без"}}
# Words that softly negate the next content word ("no time", "нет на это
# времени") and are answers of their own otherwise ("no, I am interested").
_NEGATORS_SOFT = {"en": {"no", "nothing", "none"}, "ru": {"нет", "ничего", "неа"}}
_CLAUSE_BREAKS = {"en": {"but", "however", "though", "although", "yet"}, "ru": {"но", "а", "однако", "зато", "хотя"}}
_STOP_WORDS = {
    "en": set(
        "a an the i me my we us our you your it its is am are was were be been to of in on at for with "
        "this that these those do does did have has had so just really very well oh uh um er ah please "
        "and or would will can could should there here what about all too quite even ever actually "
        "particularly exactly totally that's any".split()
    ),
    "ru": set(
        "я мы вы ты он она оно они меня нас вас тебя его ее их мне нам вам это этот эта то та и в на с к "
        "по за у о об от до из же ли бы вот ну ой ах э а уж уже так просто очень пожалуйста было был "
        "была будет что как совсем вообще особо особенно слишком сильно всё все даже".split()
    ),
}


def function_words(language: str) -> frozenset[str]:
    """Words that carry little meaning alone ("of", "the", "я", "это")."""
    return frozenset(_STOP_WORDS.get(language.split("-")[0].lower(), ()))


# Words that mean the same thing to a sales call, by stem -> the one stem both phrases and answers
# are read as, so "put me through to a manager" meets the phrase "talk to a person" and "quit phoning
# me" meets "stop calling me". Written from what people say on such calls, tuned on the dev suites
# (tests/data/understanding/*_dev.yaml), never on the held-out test suites.
_SYNONYM_GROUPS = {
    "en": {
        "person": "human person oper agent manag repres rep supervisor boss salesperson salesman sale",
        "call": "call phone ring dial contact",
        "stop": "stop quit ceas",
        "remov": "remov delet eras unsubscrib",
        "list": "list databas system contact_list",
        "email": "email mail inbox",
        "inform": "inform info detail brochur materi pdf deck one-pag literatur",
        "price": "price charg fee expens cheap",
        "busi": "busi swamp slam occupi drive board flight rush hurri",
        "yes": "yes yeah yep yup ya yah sure okay ok alright absolut definit certain great perfect excel",
        "no": "no nah nope naw",
        "compani": "compani firm organ organis organiz busi_nam",
        "robot": "robot bot autom machin recorded",
        "later": "later anoth",
        "team": "team peopl guy staff folk crew",
    },
    "ru": {
        "человек": "человек оператор менеджер сотрудник специалист консультант жив руководител начальник",
        "звон": "звон названива набира набер беспоко трезвон",
        "удал": "удал убер вычеркн исключ внес занес",
        "список": "список баз",
        "позж": "позж попозж",
        "отправ": "отправ пришл присла присыла пришлет скин скинут скинет кин кинут высл высла вышл высыла пересла перешл сброс",
        "почт": "почт email имейл мейл письм электронк",
        "цен": "цен стоимост прайс расценк тариф",
        "да": "да аг уг конечн отличн год ок окей угу ладн",
        "нет": "нет неа",
        "компан": "компан фирм организац",
        "робот": "робот автоответчик бот автомат автоматическ",
    },
}
_SYNONYMS = {lang: {stem: canon for canon, stems in groups.items() for stem in stems.split()} for lang, groups in _SYNONYM_GROUPS.items()}
# Phrases read as other phrases before anything else (word boundaries, lower case).
_PHRASE_SUBS = {
    "en": [
        (re.compile(p), r)
        for p, r in [
            (r"\bwrong (person|guy|lady|one|people|anna)\b", "wrong number"),
            (r"\b(no ?one|nobody|no body) (here |)(called|named|by (that|the) name)\b", "wrong number"),
            (r"\bput me through\b", "connect me"),
            # a recogniser's homophone: "know" alone or leading an answer is "no" ("actually know", "know, we're fine")
            (r"(^|[.,!?]\s*|\bactually |\boh )know\b(?!\s+(what|who|where|when|how|if|that|about|it|him|her|them|the)\b)", r"\1no"),
            # a name the script cannot know: "no, this is Mark's phone" is someone else's phone
            (
                r"\b(this|it)(?: is|'s) (?!my\b|your\b|our\b|her\b|his\b|the\b|a\b)[a-z]+'s (phone|number|mobile|cell)\b",
                r"\1 is someone else's \2",
            ),
            (r"\bhow much\b", "price"),
            (r"\bi(?: will|'ll) pass\b", "no"),
            # a suggestion, not a negation: "why don't you send me a one-pager first"
            (r"\bwhy (?:don't|do not|dont) you\b", "please"),
            # "personal" stems to "person" (a human to talk to): "this is my personal mobile" is a private one
            (r"\bpersonal(?:ly)?\b", "private"),
            # a double negative denies the words it names: "it's not that I'm not interested, I just ..." is about the rest
            (r"\bnot that (?:i|we)(?:'m| am|'re| are) not (?:interested|keen|bothered)\b", ""),
            # a polite refusal: "nope, that's alright" is a no, not an "alright"
            (
                r"^(no|nope|nah)[,.!]?\s+(?:that's|that is|it's|it is|we're|we are|i'm|i am) (?:alright|all right|fine|ok|okay)\b",
                r"\1 thanks",
            ),
            (r"\b(e-mail|e mail)\b", "email"),
            (r"\bone pager\b", "one-pager"),
        ]
    ],
    "ru": [
        (re.compile(p), r)
        for p, r in [
            (r"\bстоп[- ]?лист", "список"),
            (r"\bне[- ]не\b", "нет"),
            # "не то чтобы неинтересно" (it's not that ...) denies what it names; "это не то, что нас интересует" is a no
            (r"\bне то,? чтобы\s+(?:не\s*)?\w+", ""),
            (r"\bне то,? что\b", "не"),
            (r"\bщас\b", "сейчас"),
            (r"\bдавайте не\b", "не"),  # "давайте не сейчас" is not a "давайте"
            (
                r"\bэто (телефон|номер) (?!мой\b|наш\b|её\b|ее\b|его\b)[а-я]+\b",
                r"это чужой \1",
            ),  # "это телефон Марка"  # "это не то, что нас интересует": the comma must not end the negation
            (r"\bсколько стоит\b", "цена"),
            (r"\bпочем\b", "цена"),
            (r"\bчерный список", "список"),
        ]
    ],
}
_NUMBERS_EN = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_TIME_EN = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?(?=\W|$)")


# Negated, these words negate the rest of their clause: "I don't want to talk to anyone", "не нужна нам встреча".
_NEGATION_SPREADERS = {
    "en": frozenset({"want", "need", "interest", "like", "wish"}),
    "ru": frozenset({"хоч", "хот", "интересн", "интерес"}),
}
_STOP_WEIGHT = 0.3
_PRIORITY_MARGIN = 0.1  # scores this close count as a tie that the intents' priorities break
_CONTENT_WEIGHT = 1.0
_TOKEN_SIM = 0.85  # fuzzy similarity for two stems to count as the same word
_VETO_SIM = 0.88  # a phrase word said with the opposite polarity vetoes the phrase
_PHRASE_SHARE = 0.8  # the rest of the score is how much of the utterance the phrase explains

_WORD = re.compile(r"[\w']+|[.,!?;:]+", re.UNICODE)


@dataclass(frozen=True)
class Token:
    stem: str
    word: str
    polarity: int  # PLAIN, SOFT or HARD
    weight: float
    late: bool = False  # said after the last "but"/"но"

    @property
    def negated(self) -> bool:
        return self.polarity != PLAIN

    @property
    def key(self) -> tuple[str, str]:
        return self.stem, self.word

    def __str__(self) -> str:
        return ("", "~", "¬")[self.polarity] + self.stem


@dataclass(frozen=True)
class IntentSpec:
    """One intent as the matcher sees it."""

    name: str
    phrases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    threshold: float | None = None
    priority: int = 0
    is_global: bool = False


@dataclass(frozen=True)
class IntentMatch:
    intent: str
    score: float
    phrase: str
    is_global: bool
    priority: int = 0
    end: int = 0  # index of the last utterance word it explains: later wins a tie


class Normalizer:
    """Text → tokens with stems and polarity, for one language."""

    def __init__(self, language: str, known_stems: Iterable[str] = ()) -> None:
        self.language = language.split("-")[0].lower()
        algo = _STEMMERS.get(self.language)
        self._stemmer = snowballstemmer.stemmer(algo) if algo else None
        self._hard = _NEGATORS_HARD.get(self.language, set())
        self._soft = _NEGATORS_SOFT.get(self.language, set())
        self._breaks = _CLAUSE_BREAKS.get(self.language, set())
        self._stop = _STOP_WORDS.get(self.language, set())
        self._known = frozenset(known_stems)
        self._synonyms = _SYNONYMS.get(self.language, {})
        self._spreaders = _NEGATION_SPREADERS.get(self.language, frozenset())
        self._subs = _PHRASE_SUBS.get(self.language, [])

    def words(self, text: str) -> list[str]:
        text = text.lower().replace("ё", "е").replace("’", "'").replace("`", "'")
        if self.language == "en":
            for pattern, repl in _CONTRACTIONS:
                text = pattern.sub(repl, text)
            text = _TIME_EN.sub(_time_words, text)  # a recogniser writes "Tuesday at 10", a phrase "tuesday at ten"
        for pattern, repl in self._subs:
            text = pattern.sub(repl, text)
        if self.language == "ru" and text.strip(" .,!?") == "не":  # "Не." alone is a no, not a negation of nothing
            text = "нет"
        out: list[str] = []
        for w in _WORD.findall(text):
            w = w.strip("'")
            if not w:
                continue
            out.extend(_NO_APOSTROPHE.get(w, w).split() if self.language == "en" else [w])
        return out

    def stem(self, word: str) -> str:
        stem = self._stemmer.stemWord(word) if self._stemmer else word
        if self.language == "ru" and stem.endswith("ьт") and len(stem) > 4:
            stem = stem[:-2]  # the stemmer leaves the polite imperative's "ьт": "скиньте" is "скинь"
        return self._synonyms.get(stem, stem)

    def tokens(self, text: str) -> list[Token]:
        words = self.words(text)
        last_break = max((i for i, w in enumerate(words) if w in self._breaks), default=-1)
        tokens: list[Token] = []
        pending = PLAIN  # the polarity the next content word takes
        scope = PLAIN  # the polarity of every content word to the end of the clause ("not interested in X")
        for i, word in enumerate(words):
            if not word[0].isalnum() or word in self._breaks:  # a clause ends, and its negation
                pending = scope = PLAIN
                continue
            late = i > last_break >= 0
            if word in self._hard:
                tokens.append(Token(word, word, PLAIN, _STOP_WEIGHT, late))
                pending = HARD
                continue
            if word in self._soft:
                canon = self._synonyms.get(word, word)  # "неа" is "нет"
                tokens.append(Token(canon, word, PLAIN, _CONTENT_WEIGHT, late))
                pending = SOFT
                continue
            is_stop = word in self._stop
            if is_stop:
                tokens.append(Token(self.stem(word), word, PLAIN, _STOP_WEIGHT, late))
                continue
            fused = self._fused_negation(word)
            if fused:  # "неинтересно" is read exactly as "не интересно"
                tokens.append(Token("не", "не", PLAIN, _STOP_WEIGHT, late))
                token = Token(fused[0], fused[1], HARD, _CONTENT_WEIGHT, late)
            else:
                token = Token(self.stem(word), word, max(pending, scope), _CONTENT_WEIGHT, late)
            tokens.append(token)
            if token.polarity == HARD and token.stem in self._spreaders:
                # "not interested in your prices" does not ask for the price; softly, since an ASR text
                # has no commas: "не интересно больше не звоните" still asks not to be called
                scope = SOFT
            pending = PLAIN
        return tokens

    def _fused_negation(self, word: str) -> tuple[str, str] | None:
        # Russian writes some negations as one word: "неинтересно". Split only
        # when the rest is a word the intents use, so "неделя" stays a week.
        if self.language != "ru" or not word.startswith("не") or len(word) <= 5 or self.stem(word) in self._known:
            return None
        rest = self.stem(word[2:])
        return (rest, word[2:]) if rest in self._known else None


@dataclass
class _CompiledPhrase:
    text: str
    tokens: list[Token]
    total_weight: float
    exact: bool  # keywords must be present in full


@dataclass
class _CompiledIntent:
    spec: IntentSpec
    phrases: list[_CompiledPhrase] = field(default_factory=list)


class IntentMatcher:
    """Scores an utterance against a fixed set of intents (one node plus the globals)."""

    def __init__(self, intents: Sequence[IntentSpec], language: str, threshold: float = 0.72) -> None:
        self.language = language
        self.threshold = threshold
        plain = Normalizer(language)
        known = {t.stem for spec in intents for p in (*spec.phrases, *spec.keywords) for t in plain.tokens(p)}
        self.normalizer = Normalizer(language, known)
        self._intents: list[_CompiledIntent] = []
        vocab: set[tuple[str, str]] = set()
        for spec in intents:
            compiled = _CompiledIntent(spec)
            for text, exact in [(p, False) for p in spec.phrases] + [(k, True) for k in spec.keywords]:
                toks = self.normalizer.tokens(text)
                if toks:
                    compiled.phrases.append(_CompiledPhrase(text, toks, sum(t.weight for t in toks), exact))
                    vocab.update(t.key for t in toks)
            self._intents.append(compiled)
        self._vocab = tuple(sorted(vocab))

    @property
    def intents(self) -> list[IntentSpec]:
        return [c.spec for c in self._intents]

    def vocabulary(self) -> list[str]:
        """Every phrase and keyword the intents expect, normalised, for a restricted ASR grammar."""
        seen: dict[str, None] = {}
        for c in self._intents:
            for p in c.phrases:
                seen.setdefault(" ".join(w for w in self.normalizer.words(p.text) if w[0].isalnum()), None)
        return [p for p in seen if p]

    def sounds_alike(self, a: str, b: str) -> float:
        """How alike two recognitions of one answer are, 0..1: a character-level ratio of their stems
        ("take me off your lute" / "take me off your list" 0.9; "to make and work for me" / "do not
        ever call" 0.3). Not alike at all when only one of them negates a word: a grammar forced "you've got
        one minute" onto "i do not have a minute", 0.6 alike letter by letter and the opposite answer."""
        tokens_a, tokens_b = self.normalizer.tokens(a), self.normalizer.tokens(b)
        if any(t.polarity == HARD for t in tokens_a) != any(t.polarity == HARD for t in tokens_b):
            return 0.0
        stems_a = " ".join(t.stem for t in tokens_a)
        stems_b = " ".join(t.stem for t in tokens_b)
        return fuzz.ratio(stems_a, stems_b) / 100 if stems_a and stems_b else 0.0

    def match(self, text: str) -> IntentMatch | None:
        """The winning intent, or None when nothing reaches its threshold."""
        candidates = [m for m in self.scores(text) if m.score >= self._threshold_of(m.intent)]
        if not candidates:
            return None
        # Priority decides among answers that fit about equally well (a "do not call me" must win over
        # "call me later" in "don't call me later or ever"), never over a clearly better fit: a priority-first
        # pick sent "we already use a cost tool" to the price intent and "someone handles that" to a person.
        best = max(m.score for m in candidates)
        close = [m for m in candidates if m.score >= best - _PRIORITY_MARGIN]
        return max(close, key=lambda m: (m.priority, round(m.score, 6), m.end, not m.is_global))

    def scores(self, text: str) -> list[IntentMatch]:
        """Best score of every intent, highest first (for debugging and analytics)."""
        utt = self.normalizer.tokens(text)
        if not utt:
            return []
        sims = self._similarities(utt)
        out = []
        for c in self._intents:
            best: tuple[float, int, str] = (0.0, 0, "")
            for phrase in c.phrases:
                s, end = self._phrase_score(phrase, utt, sims)
                if (s, end) > best[:2]:
                    best = (s, end, phrase.text)
            if best[0] > 0:
                out.append(IntentMatch(c.spec.name, best[0], best[2], c.spec.is_global, c.spec.priority, best[1]))
        return sorted(out, key=lambda m: -m.score)

    def _threshold_of(self, name: str) -> float:
        for c in self._intents:
            if c.spec.name == name:
                return c.spec.threshold or self.threshold
        return self.threshold

    def _similarities(self, utt: list[Token]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
        """For each utterance word, the vocabulary words it may be (similarity 0..1)."""
        return {tok.key: _similar_words(tok.key, self._vocab) for tok in utt}

    @staticmethod
    def _phrase_score(phrase: _CompiledPhrase, utt: list[Token], sims) -> tuple[float, int]:
        covered = 0.0
        used: set[int] = set()
        for p in phrase.tokens:
            best, best_i = 0.0, -1
            for i, u in enumerate(utt):
                sim = sims[u.key].get(p.key, 0.0)
                if sim < _TOKEN_SIM:
                    continue
                if u.negated != p.negated:
                    if HARD in (u.polarity, p.polarity):
                        if sim >= _VETO_SIM and p.weight == _CONTENT_WEIGHT and u.weight == _CONTENT_WEIGHT:
                            return 0.0, 0  # the person said the opposite of this phrase
                        continue
                    sim *= _SOFT_FACTOR
                if sim > best and i not in used:
                    best, best_i = sim, i
            if best_i >= 0:
                used.add(best_i)
                covered += p.weight * best
            elif phrase.exact:
                return 0.0, 0
        if covered == 0:
            return 0.0, 0
        phrase_cov = covered / phrase.total_weight
        if phrase.exact and phrase_cov < _TOKEN_SIM:
            return 0.0, 0
        utt_weight = sum(_utt_weight(u) for u in utt)
        explained = sum(_utt_weight(utt[i]) for i in used)
        return _PHRASE_SHARE * phrase_cov + (1 - _PHRASE_SHARE) * (explained / utt_weight), max(used)


def _time_words(m: re.Match) -> str:
    hour, minutes, half = m.group(1), m.group(2), m.group(3)
    if hour not in _NUMBERS_EN:
        return m.group(0)
    out = [_NUMBERS_EN[hour]]
    if minutes and minutes != "00":
        out.append(minutes)
    if half:
        out.append("am" if half.startswith("a") else "pm")
    return " ".join(out)


def _utt_weight(tok: Token) -> float:
    return tok.weight * (2.0 if tok.late else 1.0)


@lru_cache(maxsize=8192)
def _similar_words(key: tuple[str, str], vocab: tuple[tuple[str, str], ...]) -> dict[tuple[str, str], float]:
    """Vocabulary entries (stem, word) that this (stem, word) may be, by the better of stem and word similarity.

    Short words count only when their stems are equal ("no" is not "not"), and
    so do numbers; longer ones may differ by an ASR error or an ending the
    stemmer missed ("занят"/"занята" stem to "зан"/"занят").
    """
    stem, word = key
    out = {v: 1.0 for v in vocab if v[0] == stem}
    if len(word) <= 3 or word.isdigit():
        return out
    cutoff = _TOKEN_SIM * 100
    for query, choices in ((stem, [v[0] for v in vocab]), (word, [v[1] for v in vocab])):
        for _choice, score, idx in process.extract(query, choices, scorer=fuzz.ratio, score_cutoff=cutoff, limit=None):
            v = vocab[idx]
            if len(v[1]) > 3 and not v[1].isdigit():
                out[v] = max(out.get(v, 0.0), score / 100)
    return out
