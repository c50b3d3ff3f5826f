"""Realistic guideline texts of a given size: headed sections of varied normative sentences
(must/should/shall, conditions, numbers), seeded so every run sends the same texts.

Sentences are drawn from combinations rather than repeated, so the text compresses like
prose (PostgreSQL's TOAST and etcd would make a repeated paragraph nearly free)."""

from __future__ import annotations

import json
import random

ROLES = (
    "Staff",
    "Nurses",
    "Ward managers",
    "Doctors",
    "Porters",
    "Cleaning teams",
    "Pharmacists",
    "Students on placement",
    "Infection prevention leads",
    "Theatre staff",
    "Agency workers",
    "Volunteers",
)
MODALS = ("must", "should", "shall", "are required to", "may", "must not", "should not")
VERBS = (
    "clean",
    "check",
    "record",
    "report",
    "label",
    "store",
    "dispose of",
    "change",
    "inspect",
    "decontaminate",
    "document",
    "escalate",
    "replace",
    "review",
    "audit",
    "wear",
    "remove",
    "prepare",
    "isolate",
    "confirm",
    "sign",
    "explain",
    "test",
    "flush",
    "cover",
)
OBJECTS = (
    "the hands",
    "the gloves and apron",
    "the specimen",
    "the sharps container",
    "the dressing",
    "the infusion line",
    "the medicine chart",
    "the identity band",
    "the cannula site",
    "the commode",
    "the bed space",
    "the fluid balance chart",
    "the observation chart",
    "the controlled drugs register",
    "the isolation sign",
    "the waste bag",
    "the mask",
    "the urinary catheter",
    "the feeding tube",
    "the oxygen supply",
    "the resuscitation trolley",
    "the visitor log",
    "the consent form",
    "the allergy status",
    "the care plan",
)
QUALIFIERS = (
    "",
    "",
    "carefully",
    "in full",
    "without delay",
    "at the bedside",
    "in ink",
    "with a colleague",
    "twice",
    "in the agreed format",
    "electronically",
    "on paper",
)
CONDITIONS = (
    "before every patient contact",
    "after contact with body fluids",
    "within {n} hours of admission",
    "at least every {n} minutes",
    "when the temperature rises above {t} degrees",
    "during an outbreak of norovirus",
    "before leaving the isolation room",
    "at the start of each shift",
    "unless the patient declines after an informed discussion",
    "if the alarm sounds for more than {n} seconds",
    "when visibly soiled",
    "for {n} days after the last symptom",
    "before any aseptic procedure",
    "on transfer between wards",
)
REASONS = (
    "because alcohol does not kill spores",
    "so that the audit trail is complete",
    "to protect other patients and visitors",
    "as required by the national standard",
    "since delays increase the risk of harm",
    "so that the next shift can act on it",
    "",
    "",
)
# Words for the detail clauses, so that sentences rarely repeat verbatim.
_DETAIL_WORDS = (
    "catheters cannulas dressings wounds drains stoma tracheostomy ventilators pumps syringes "
    "linen curtains mattresses commodes bedpans trolleys keyboards telephones handrails "
    "thermometers stethoscopes glucometers tourniquets splints slings walking-frames hoists "
    "wheelchairs stretchers incubators cots feeding-tubes oxygen nebulisers suction monitors "
    "antibiotics anticoagulants insulin opioids vaccines steroids antiemetics laxatives "
    "visitors relatives carers interpreters chaplains contractors inspectors auditors "
    "outpatients day-cases neonates adolescents older-adults bariatric palliative dementia "
    "chlorine detergent peroxide wipes spillage-kits gowns visors respirators overshoes "
    "handover discharge admission transfer theatre recovery endoscopy radiology pharmacy "
    "laboratory mortuary kitchen laundry corridor lift stairwell sluice storeroom office"
)
DETAILS = _DETAIL_WORDS.split()
TOPICS = (
    "Hand hygiene",
    "Personal protective equipment",
    "Sharps safety",
    "Isolation precautions",
    "Medicines storage",
    "Specimen handling",
    "Deteriorating patients",
    "Environmental cleaning",
    "Incident reporting",
    "Patient identification",
    "Waste management",
    "Training and audit",
)


def _sentence(rng: random.Random) -> str:
    condition = rng.choice(CONDITIONS).format(
        n=rng.randint(2, 96), t=round(rng.uniform(37.2, 39.5), 1)
    )
    reason = rng.choice(REASONS)
    words = rng.sample(DETAILS, 3)
    detail = f", including {words[0]}, {words[1]} and {words[2]}" if rng.random() < 0.7 else ""
    action = " ".join(
        w for w in (rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(QUALIFIERS)) if w
    )
    text = f"{rng.choice(ROLES)} {rng.choice(MODALS)} {action} {condition}{detail}"
    return f"{text}, {reason}." if reason else f"{text}."


def guideline_text(size: int, seed: int = 0) -> str:
    """A guideline of `size` characters (ASCII, so also `size` bytes), starting with a
    title; each seed gives a different text."""
    rng = random.Random(f"{size}-{seed}")
    parts = [f"# Clinical guideline {seed}: infection prevention and safe care\n\n"]
    length = len(parts[0])
    section = 0
    while length < size:
        section += 1
        heading = f"## {section}. {rng.choice(TOPICS)}\n\n"
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(3, 7))) + "\n\n"
        parts += [heading, paragraph]
        length += len(heading) + len(paragraph)
    return "".join(parts)[: size - 1] + "."


def request_bodies(size: int, count: int, title: str = "Bench") -> list[bytes]:
    """`count` different JSON bodies of POST /jobs with a guideline of `size` characters."""
    return [
        json.dumps(
            {"guideline_text": guideline_text(size, seed), "title": f"{title} {seed}"}
        ).encode()
        for seed in range(count)
    ]
