"""Language codes of the tasks and their mapping onto URIEL's ISO 639-3 codes.

XNLI uses ISO 639-1 codes (``en``, ``sw``, ``zh``); SIB-200 uses Flores-200
codes (ISO 639-3 + script, ``eng_Latn``). URIEL / lang2vec key languages by
ISO 639-3 and use the *individual* language where one exists (``arb``
Standard Arabic, ``swh`` Swahili, ``cmn`` Mandarin), hence the table below.
"""

from __future__ import annotations

import dataclasses
import re

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Language:
    """One task language.

    Attributes:
        code: the task's own code (``en``, ``eng_Latn``).
        iso639_3: the code URIEL uses.
        name: English name.
        family: top-level genealogical family (Glottolog / WALS naming).
        genus: a lower grouping (e.g. Germanic), empty when unknown.
        script: ISO 15924 script name.
    """

    code: str
    iso639_3: str
    name: str
    family: str
    genus: str
    script: str


# XNLI's 15 languages (Conneau et al. 2018). Families and genera follow WALS.
XNLI_LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "eng", "English", "Indo-European", "Germanic", "Latn"),
        Language("ar", "arb", "Arabic", "Afro-Asiatic", "Semitic", "Arab"),
        Language("bg", "bul", "Bulgarian", "Indo-European", "Slavic", "Cyrl"),
        Language("de", "deu", "German", "Indo-European", "Germanic", "Latn"),
        Language("el", "ell", "Greek", "Indo-European", "Greek", "Grek"),
        Language("es", "spa", "Spanish", "Indo-European", "Romance", "Latn"),
        Language("fr", "fra", "French", "Indo-European", "Romance", "Latn"),
        Language("hi", "hin", "Hindi", "Indo-European", "Indic", "Deva"),
        Language("ru", "rus", "Russian", "Indo-European", "Slavic", "Cyrl"),
        Language("sw", "swh", "Swahili", "Niger-Congo", "Bantoid", "Latn"),
        Language("th", "tha", "Thai", "Tai-Kadai", "Kam-Tai", "Thai"),
        Language("tr", "tur", "Turkish", "Altaic (Turkic)", "Turkic", "Latn"),
        Language("ur", "urd", "Urdu", "Indo-European", "Indic", "Arab"),
        Language("vi", "vie", "Vietnamese", "Austro-Asiatic", "Viet-Muong", "Latn"),
        Language("zh", "cmn", "Chinese (Mandarin)", "Sino-Tibetan", "Chinese", "Hani"),
    ]
}

_FLORES = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")


def sib200_language(code: str) -> Language:
    """Metadata for a SIB-200 (Flores-200) code such as ``eng_Latn``.

    The ISO 639-3 part is taken as URIEL's code; names and families of the
    15 XNLI languages are reused where they match. :func:`language_table`
    gives every SIB-200 language its family from URIEL's genetic features
    (:func:`xldrift.analysis.typology.top_families`).
    """
    m = _FLORES.match(code)
    if not m:
        raise ValueError(f"{code!r} is not a Flores-200 code like 'eng_Latn' (iso639-3 + '_' + script)")
    iso, script = m.groups()
    for lang in XNLI_LANGUAGES.values():
        if lang.iso639_3 == iso or (iso, lang.iso639_3) in {("zho", "cmn"), ("swh", "swh")}:
            return dataclasses.replace(lang, code=code, iso639_3=iso, script=script)
    return Language(code, iso, code, "", "", script)


def language_table(codes: list[str], task: str) -> pd.DataFrame:
    """A tidy table ``code, iso639_3, name, family, genus, script`` for ``codes``."""
    rows = []
    for c in codes:
        if task == "xnli":
            if c not in XNLI_LANGUAGES:
                raise ValueError(f"unknown XNLI language {c!r}; valid: {', '.join(sorted(XNLI_LANGUAGES))}")
            rows.append(dataclasses.asdict(XNLI_LANGUAGES[c]))
        else:
            rows.append(dataclasses.asdict(sib200_language(c)))
    table = pd.DataFrame(rows)
    if task != "xnli" and len(table):
        # one naming for all 200 languages: URIEL's (Glottolog) top-level families
        from xldrift.analysis import typology

        fams = typology.top_families(table["iso639_3"].tolist())
        table["family"] = [fams.get(iso) or "" for iso in table["iso639_3"]]
    return table


def to_iso639_3(codes: list[str], task: str) -> dict[str, str]:
    """Map task codes to URIEL ISO 639-3 codes."""
    return dict(zip(codes, language_table(codes, task)["iso639_3"]))
