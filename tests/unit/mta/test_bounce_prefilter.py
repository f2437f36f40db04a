"""The classifier's literal prefilter (prefilter.py) never skips a rule that would match.

The prefilter is only an optimisation: for every pattern and every text, "the
regex finds a match" must imply "the needles admit the text", and the
classifier's answer must be the one of trying every rule in order. Checked on
hand-written tricky patterns, on texts generated at random from each shipped
rule's own regex (so that every alternative, optional part and repetition is
exercised), on lines of the bounce corpus when it is present, and on variants
of all of these in other cases and with the non-ASCII characters that
re.IGNORECASE equates with ASCII letters.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from re import _constants as sre
from re import _parser as sre_parser

import pytest

from postroom.mta.bounce import prefilter, stage
from postroom.mta.bounce.classify import MAX_TEXT_CHARS, Classifier, Rule
from postroom.mta.bounce.prefilter import fold, needles_for

CORPUS = Path(__file__).parents[3].parent / "shared" / "corpora" / "bounces"
_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_@<>()[]#'\"éüжİıſK漢"
)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(())


def _admits(pattern: re.Pattern[str], text: str) -> bool:
    needles = needles_for(pattern)
    return needles is None or needles.admit(fold(text), text.isascii())


def test_lookalike_table_is_complete() -> None:
    # Every non-ASCII character that an ASCII character matches case-insensitively.
    everything = "".join(
        chr(code) for code in range(0x80, sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF
    )
    found = {ord(char) for char in re.findall(r"[\x00-\x7f]", everything, re.IGNORECASE)}
    assert found == set(prefilter._ASCII_LOOKALIKES)


@pytest.mark.parametrize(
    ("pattern", "matching", "rejected"),
    [
        (r"user(name)? unknown", ["USERNAME UNKNOWN", "user unknown"], ["unknown user"]),
        (r"mail ?box (is )?full", ["Mailbox full", "MAIL BOX IS FULL"], ["mail full"]),
        (r"\bspam\b|junk (mail|e-?mail)", ["ſpam", "JUNK EMAIL", "junk e-mail"], ["junk"]),
        (r"(a|b)?c{0,3}z", ["z", "acz"], ["abc"]),
        (
            r"kein(en)? Benutzer|пользовател\w* не найден",
            ["KEİN Benutzer", "ПОЛЬЗОВАТЕЛЬ не найден"],
            ["plain ascii"],
        ),
        (r"(?-i:Quota) exceeded", ["Quota exceeded"], ["quota exceed"]),
        (r"^[ \t]*<{3,4} ?5\d\d", ["<<< 550 no", "  <<<<550"], ["<< 550"]),
        (r"(?=.*mx)\bno (mx|dns) records?", ["no MX record"], ["no mx"]),
        (r"(ab){2,}|cd+", ["ababab", "cddd"], ["a b c"]),
        ("\u00e9t\u00e9 refus\u00e9", ["\u00c9T\u00c9 REFUS\u00c9"], ["ete refuse"]),
        ("k\u0131l|\u017fs", ["KIL", "kil", "ss", "SS"], ["x y"]),
    ],
)
def test_needles_admit_every_match(pattern: str, matching: list[str], rejected: list[str]) -> None:
    compiled = re.compile(pattern, re.IGNORECASE)
    for text in matching:
        assert compiled.search(text), text  # the case itself is right
        assert _admits(compiled, text), text
    for text in rejected:
        assert not compiled.search(text), text
        assert not _admits(compiled, text), text  # the prefilter does its work


def test_no_needles_when_a_branch_needs_no_literal() -> None:
    assert needles_for(re.compile(r"relay(ing)?|[xy]", re.I)) is None
    assert needles_for(re.compile(r"(mail)?box|.{3}", re.I)) is None
    assert needles_for(re.compile(r"\d+", re.I)) is None


def test_needles_reject_texts_without_their_literals() -> None:
    needles = needles_for(re.compile(r"mail ?box (is )?(full|over quota)", re.I))
    assert needles is not None
    assert not needles.admit(fold("user unknown"), True)
    assert not needles.admit(fold("mailbox unavailable"), True)
    assert needles.admit(fold("MAILBOX over QUOTA"), True)
    only_foreign = needles_for(re.compile("受信拒否|拒收", re.I))
    assert only_foreign is not None
    assert not only_foreign.admit(fold("rejected"), True)
    assert only_foreign.admit(fold("x 拒收"), False)


def test_most_shipped_rules_get_needles(classifier: Classifier) -> None:
    text_rules = [rule for rule in classifier.rules if rule.text is not None]
    with_needles = [rule for rule in text_rules if rule.needles is not None]
    assert len(with_needles) >= 0.9 * len(text_rules)


# --- random texts generated from the patterns themselves ------------------------------


def _in_class(char: str, items: list[tuple[object, object]]) -> bool:
    negate = False
    found = False
    categories = {
        sre.CATEGORY_DIGIT: str.isdigit,
        sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
        sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
        sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
        sre.CATEGORY_SPACE: str.isspace,
        sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    }
    for op, argument in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            found |= char.lower() == chr(argument).lower()  # type: ignore[arg-type]
        elif op is sre.RANGE:
            low, high = argument  # type: ignore[misc]
            found |= any(low <= ord(c) <= high for c in {char, *char.lower(), *char.upper()})
        elif op is sre.CATEGORY:
            found |= categories.get(argument, lambda c: False)(char)  # type: ignore[arg-type]
    return found != negate


def _generate(items: list[tuple[object, object]], rng: random.Random) -> str:
    out: list[str] = []
    for op, argument in items:
        if op is sre.LITERAL:
            out.append(chr(argument))  # type: ignore[arg-type]
        elif op is sre.NOT_LITERAL:
            out.append(rng.choice([c for c in _ALPHABET if ord(c) != argument]))
        elif op is sre.ANY:
            out.append(rng.choice(_ALPHABET))
        elif op is sre.IN:
            choices = [c for c in _ALPHABET if _in_class(c, argument)] or ["a"]  # type: ignore[arg-type]
            out.append(rng.choice(choices))
        elif op is sre.BRANCH:
            out.append(_generate(list(rng.choice(argument[1])), rng))  # type: ignore[index]
        elif op is sre.SUBPATTERN:
            out.append(_generate(list(argument[-1]), rng))  # type: ignore[index]
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = argument  # type: ignore[misc]
            count = rng.randint(low, min(high, low + 3))
            out.extend(_generate(list(body), rng) for _ in range(count))
        # AT, ASSERT, ASSERT_NOT, GROUPREF: generate nothing; the text may not match.
    return "".join(out)


def _variants(text: str, rng: random.Random) -> list[str]:
    lookalike = text.replace("i", "ı").replace("s", "ſ").replace("k", "\u212a").replace("I", "İ")
    mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return [
        text,
        text.upper(),
        mixed,
        lookalike,
        f"550 5.1.1 <x@example.test>: {text} (in reply to RCPT TO)",
    ]


@pytest.fixture(scope="module")
def generated_texts(classifier: Classifier) -> list[str]:
    """Texts from every shipped rule's regex and from corpus lines, with their variants."""
    rng = random.Random(20240611)
    texts: list[str] = []
    patterns = [rule.text for rule in classifier.rules if rule.text is not None]
    for pattern in [*patterns, stage._EXPLICIT]:
        tree = list(sre_parser.parse(pattern.pattern, pattern.flags))
        for _ in range(6):
            texts.extend(_variants(_generate(tree, rng), rng))
    if CORPUS.is_dir():
        lines = sorted(
            {
                line.strip()
                for path in sorted(CORPUS.rglob("*"))
                if path.is_file()
                for line in path.read_text("utf-8", errors="replace").splitlines()
                if 20 <= len(line.strip()) <= 300
            }
        )
        for line in rng.sample(lines, min(400, len(lines))):
            texts.extend(_variants(line, rng)[:4])
    return texts


def _plain_first_match(
    classifier: Classifier, reply: str, status: str, text: str, text_only: bool
) -> Rule | None:
    """The classifier's semantics without the prefilter: every rule, in order."""
    folded = re.sub(r"\s+", " ", text[:MAX_TEXT_CHARS])
    for rule in classifier.rules:
        if text_only and (rule.text is None or rule.status or rule.reply):
            continue
        if rule.matches(reply, status, folded):
            return rule
    return None


def test_generated_and_corpus_texts_every_rule(
    classifier: Classifier, generated_texts: list[str]
) -> None:
    texts = generated_texts
    assert len(texts) > 500
    patterns = [rule.text for rule in classifier.rules if rule.text is not None]
    needles = [(pattern, needles_for(pattern)) for pattern in [*patterns, stage._EXPLICIT]]
    checked = 0
    for text in texts:
        folded_ws = re.sub(r"\s+", " ", text)
        folded, is_ascii = fold(folded_ws), folded_ws.isascii()
        for pattern, needle in needles:
            if pattern.search(folded_ws):
                checked += 1
                admitted = needle is None or needle.admit(folded, is_ascii)
                assert admitted, (pattern.pattern[:60], text)
    assert checked > 300  # the generator did produce matches


def test_classifier_fast_path_equals_rule_by_rule(
    classifier: Classifier, generated_texts: list[str]
) -> None:
    codes = [("", ""), ("550", "5.1.1"), ("452", "4.2.2"), ("554", "5.7.1"), ("550", "5.0.0")]
    for index, text in enumerate(generated_texts):
        reply, status = codes[index % len(codes)]
        for text_only in (False, True):
            fast = classifier.first_match(reply, status, text, text_only=text_only)
            plain = _plain_first_match(classifier, reply, status, text, text_only)
            assert fast is plain, text


@pytest.mark.parametrize(
    ("text", "stage_name"),
    [
        ("550 5.1.1 user unknown (in reply to RCPT TO command)", "rcpt to"),
        ("SMTP error from remote mail server after end of data", "data"),
        ("Connected to 192.0.2.1 but my name was rejected.", "helo"),
        ("ıN REPLY TO MAİL FROM", "mail from"),  # look-alikes re.IGNORECASE accepts
        (">>> DATA\n<<< 554 rejected", "data"),  # a transcript, not an explicit phrase
        ("451 try later", None),
        ("", None),
    ],
)
def test_failed_stage_with_prefilter(text: str, stage_name: str | None) -> None:
    assert stage.failed_stage(text) == stage_name
