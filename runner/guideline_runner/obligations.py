"""The obligations of a guideline: its sentences that require, forbid or recommend an
action, found with their offsets so that coverage by checklist items can be measured.

A sentence is normative by its strongest modal wording:
- obligations and prohibitions (priority high): must, must not, shall, shall not,
  required (to), requires, mandatory, never, prohibited, forbidden, is/are not
  permitted/allowed, may not, cannot, do not, don't, always, need(s) to, has/have to,
  is/are responsible for;
- recommendations (medium): should, ought to, ensure(s), recommended, recommend(s),
  suggest(s), avoid, expected to, make sure, and imperatives (a sentence opening with an action
  verb such as "Wear", "Report", "Dispose");
- options (low): may, can, optional, consider, encouraged ("could" and "optionally"
  describe more often than they offer).

A sentence is not normative at all, whatever its wording, when nobody can act on it
(`not_actionable`): a question ("Should ... Be Used?"), a heading-like line in title case,
a statement that no recommendation is made ("The authors cannot make a recommendation"),
an evidence summary ("The USPSTF found adequate evidence that ...", "There is
insufficient evidence ...") or background reporting a study or survey ("In a 2009 study,
approximately half of responding pediatricians ...").

An obligation, for coverage, is a high or medium sentence: what a reader of the
checklist must not miss. Options are not obligations. Sentences are found by pysbd (see
`text.split_units`), headings excluded.

`strength_of` names how the sentence words its modal: `must`, `must_not`, `should`,
`should_not` or `may`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from guideline_runner.models import Priority, Strength
from guideline_runner.text import Unit, split_units


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_HIGH: Final = re.compile(
    r"\b(must|shall|required|requires?|mandatory|never|prohibited|forbidden|"
    r"(?:is|are) not (?:permitted|allowed)|may not|cannot|can not|do not|don't|"
    r"must not|shall not|always|need(?:s)? to|ha(?:ve|s) to|(?:is|are) responsible for)\b",
    re.IGNORECASE,
)
_MEDIUM: Final = re.compile(
    r"\b(should|ought to|ensures?|recommended|recommends?|suggests?|avoid|"
    r"expected to|make sure)\b",
    re.IGNORECASE,
)
_LOW: Final = re.compile(r"\b(may|can|optional|consider|encouraged)\b", re.IGNORECASE)
_IMPERATIVE_VERBS: Final = _wordset(
    """use keep check verify review document record report store encrypt wear wash follow
    notify inform submit obtain complete maintain update lock label dispose remove clean
    disinfect train test log protect restrict limit apply confirm provide include assign
    approve monitor audit rotate enable disable install patch validate sign return call
    contact escalate retain delete archive ensure avoid schedule inspect measure prepare
    wait register back secure close turn put place"""
)
_NOT_IMPERATIVE_NEXT: Final = frozenset({"of", "is", "are", "was", "were", "by", "and", "or"})

OBLIGATION_PRIORITIES: Final = frozenset({Priority.HIGH, Priority.MEDIUM})

_NO_RECOMMENDATION: Final = re.compile(
    r"\b(?:(?:can ?not|could not|cannot|do(?:es)? not|did not|unable to|not) "
    r"(?:make|issue|give|provide|offer)(?: a| any)?(?: \w+)? recommendations?"
    r"|no recommendations? (?:can|could|is|was|were|are)"
    r"|^no recommendation\b"
    r"|evidence (?:is|was|remains) (?:insufficient|inadequate|lacking)"
    r"|insufficient evidence to (?:recommend|make|assess|determine|support)"
    r"|(?:the )?current evidence is insufficient)",
    re.IGNORECASE,
)
_EVIDENCE_SUMMARY: Final = re.compile(
    r"\b(?:found|finds|find) (?:adequate|convincing|inadequate|insufficient|limited|"
    r"little|no|some|moderate|low|high)(?:[- ]quality)? evidence\b"
    r"|^(?:there (?:is|was|are) )?(?:adequate|convincing|inadequate|insufficient|limited|"
    r"little|moderate|low|high|strong|weak)[- ](?:quality |certainty )?evidence\b"
    r"|^(?:the )?(?:evidence|data|studies|trials) (?:suggest|show|indicate|demonstrate|"
    r"support)s?\b"
    r"|^(?:quality|level|strength|certainty) of (?:the )?evidence\b",
    re.IGNORECASE,
)
_BACKGROUND: Final = re.compile(
    r"^(?:in|from|a|an|one|another|the) (?:\w+ ){0,3}(?:(?:19|20)\d\d )?(?:\w+ ){0,2}"
    r"(?:study|survey|trial|review|analysis|meta-analysis|cohort|report|audit|poll)\b"
    r"|\b(?:stud(?:y|ies)|surveys?|trials?|RCTs|meta-analys[ie]s|models?|investigators|"
    r"researchers|respondents|authors|evidence)\b(?: [\w,()-]+){0,4} (?:found|finds|"
    r"reported|showed|shown|demonstrated|demonstrates|observed|noted|concluded|"
    r"suggests?|indicates?|estimated)\b"
    r"|\b(?:approximately|about|nearly|almost|over|more than|fewer than) (?:half|"
    r"one[- ]third|two[- ]thirds|a quarter|\d+(?:\.\d+)? ?%) of (?:\w+ ){0,3}"
    r"(?:respond|participa|surveyed|patients|physicians|pediatricians|clinicians)",
    re.IGNORECASE,
)


def _heading_like(sentence: str) -> bool:
    """A line without final punctuation whose longer words are all capitalised: a title
    the segmenter kept as a sentence."""
    stripped = sentence.strip()
    if not stripped or stripped[-1] in ".!;:)\"'\u201d":
        return False
    words = re.findall(r"[A-Za-z][\w'-]*", stripped)
    long_words = [w for w in words if len(w) > 3]
    return len(words) >= 2 and bool(long_words) and all(w[0].isupper() for w in long_words)


def not_actionable(sentence: str) -> bool:
    """True for a sentence no one can act on, whatever its modal wording: a question, a
    heading, a statement that no recommendation is made, an evidence summary, or
    background reporting a study or survey."""
    stripped = sentence.strip().strip("*_ ")
    return (
        stripped.endswith("?")
        or _heading_like(stripped)
        or bool(_NO_RECOMMENDATION.search(stripped))
        or bool(_EVIDENCE_SUMMARY.search(stripped))
        or bool(_BACKGROUND.search(stripped))
    )


def _is_imperative(sentence: str) -> bool:
    """True if `sentence` opens with an action verb ("Wear gloves ...")."""
    words = sentence.split(maxsplit=2)
    if not words:
        return False
    first = words[0].lower().strip(",:;")
    second = words[1].lower() if len(words) > 1 else ""
    return first in _IMPERATIVE_VERBS and second not in _NOT_IMPERATIVE_NEXT


def priority_of(sentence: str) -> Priority | None:
    """The priority a normative or imperative sentence implies, None for a descriptive
    one or one no one can act on."""
    if not_actionable(sentence):
        return None
    if _HIGH.search(sentence):
        return Priority.HIGH
    if _MEDIUM.search(sentence):
        return Priority.MEDIUM
    if _is_imperative(sentence):
        return Priority.MEDIUM
    if _LOW.search(sentence):
        return Priority.LOW
    return None


@dataclass(frozen=True)
class Obligation:
    """A normative sentence: `text[start:end]` of the guideline is `quote`."""

    quote: str
    start: int
    end: int
    priority: Priority
    heading: str | None = None


def obligations_of(text: str, units: list[Unit] | None = None) -> list[Obligation]:
    """The obligation sentences of `text` in order (from `units` if already split)."""
    found = []
    for unit in split_units(text) if units is None else units:
        priority = priority_of(unit.text)
        if priority in OBLIGATION_PRIORITIES:
            found.append(
                Obligation(
                    text[unit.start : unit.end], unit.start, unit.end, priority, unit.heading
                )
            )
    return found


# Tried in this order: a prohibition before the obligation its words contain ("must not"
# holds "must"), the stronger level before the weaker.
_STRENGTHS: Final = (
    (
        Strength.MUST_NOT,
        re.compile(
            r"\b(?:must not|mustn't|shall not|shan't|may not|cannot|can not|never|prohibited|"
            r"forbidden|(?:is|are) not (?:permitted|allowed)|do not|don't|is not to|are not to)\b",
            re.IGNORECASE,
        ),
    ),
    (
        Strength.MUST,
        re.compile(
            r"\b(?:must|shall|required|requires?|mandatory|always|need(?:s)? to|"
            r"ha(?:ve|s) to|(?:is|are) responsible for)\b",
            re.IGNORECASE,
        ),
    ),
    (
        Strength.SHOULD_NOT,
        re.compile(
            r"\b(?:should not|shouldn't|ought not|avoid|not recommended|"
            r"(?:recommends?|suggests?|advises?|recommended|suggested) against|"
            r"discourage[sd]?)\b",
            re.IGNORECASE,
        ),
    ),
    (
        Strength.SHOULD,
        re.compile(
            r"\b(?:should|ought to|ensures?|recommended|recommends?|suggests?|advises?|"
            r"expected to|make sure)\b",
            re.IGNORECASE,
        ),
    ),
    (
        Strength.MAY,
        re.compile(r"\b(?:may|can|optional|consider|encouraged)\b", re.IGNORECASE),
    ),
)


def strength_of(sentence: str) -> Strength | None:
    """The strength `sentence` words (`should` for an imperative one), None when it
    words none."""
    for strength, pattern in _STRENGTHS:
        if pattern.search(sentence):
            return strength
    if _is_imperative(sentence):
        return Strength.SHOULD
    return None
