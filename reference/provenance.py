"""Where a quoted number comes from (SPEC.md 21.1): the source grades, strongest first.

Every claim of `reports/claims.toml` and every quoted figure of the accuracy table carries one or more grades, so a
reader sees at once whether a number is the paper's own, an abstract's (the arXiv versions and the workshop page
differ: 75x against 29x), someone else's summary, or this project's target.
"""
from __future__ import annotations

from .validate import S4DInputError

GRADES = {
    "paper body": "the paper's own text, tables or figures (arXiv 2409.15022), as recorded in the project's notes "
                  "(docs/paper.md); the PDF's tables are not reachable here",
    "arXiv abstract v1": "the abstract of arXiv 2409.15022v1 (September 2024)",
    "arXiv abstract v2": "the abstract of arXiv 2409.15022v2 (June 2025)",
    "workshop abstract": "the abstract on the poster page of the NeurIPS 2024 workshop ML with New Compute Paradigms",
    "secondary source": "a summary or compilation of the paper by others, not verified against the paper",
    "this project": "not a claim of the paper: a target or an analysis of this project",
}


def check_grades(value, where: str) -> tuple[str, ...]:
    """The grades of one source, from a grade or a list of grades; an unknown or empty one is an S4DInputError
    naming `where` and the known grades."""
    grades = [value] if isinstance(value, str) else value
    if not isinstance(grades, list) or not grades or not all(isinstance(g, str) for g in grades):
        raise S4DInputError(f"{where}: 'grade' must be a grade or a non-empty list of grades (one of: "
                            f"{', '.join(GRADES)}), got {value!r}")
    unknown = [g for g in grades if g not in GRADES]
    if unknown:
        raise S4DInputError(f"{where}: unknown grade {unknown[0]!r}; known: {', '.join(GRADES)} (SPEC.md 21.1)")
    return tuple(sorted(set(grades), key=list(GRADES).index))


def grade_text(grades) -> str:
    """One line: "arXiv abstract v1, v2" for both versions, otherwise the grades joined with " + "."""
    grades = list(grades)
    if "arXiv abstract v1" in grades and "arXiv abstract v2" in grades:
        i = grades.index("arXiv abstract v1")
        grades = grades[:i] + ["arXiv abstract v1, v2"] + [g for g in grades[i + 1:] if g != "arXiv abstract v2"]
    return " + ".join(grades)
