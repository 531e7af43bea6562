"""Circle annotations: the circles CSV (``image,x,y,radius[,label]``) and the MIAS info file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picard_ad.errors import AnnotationError
from picard_ad.io.annotations.shapes import Circle
from picard_ad.io.annotations.tables import (
    number_field,
    read_table,
    read_text,
    text_field,
)


def read_circles_csv(path: str | Path) -> dict[str, list[Circle]]:
    """Circles per image from a CSV with columns ``image,x,y,radius`` (x = column, y = row from the top, pixels).

    An optional ``label`` column is kept; other columns are ignored; several rows may name the same image.
    """
    path = Path(path)
    circles: dict[str, list[Circle]] = {}
    for line, row in read_table(path, ("image", "x", "y", "radius")):
        image = text_field(row, "image", path, line)
        x, y, radius = (number_field(row, column, path, line) for column in ("x", "y", "radius"))
        circles.setdefault(image, []).append(_circle(x, y, radius, row.get("label") or None, path, line))
    return circles


def _circle(x: float, y: float, radius: float, label: str | None, path: Path, line: int) -> Circle:
    if radius <= 0:
        raise AnnotationError(path, f"line {line}: radius must be positive, got {radius:g}")
    try:
        return Circle(x=x, y=y, radius=radius, label=label)
    except ValueError as error:
        raise AnnotationError(path, f"line {line}: {error}") from None


@dataclass(frozen=True)
class MiasFilm:
    """One MIAS film: its lesions as circles, plus abnormalities the database lists without coordinates."""

    refnum: str
    tissue: str
    lesions: tuple[Circle, ...] = ()
    unlocalised: tuple[str, ...] = ()  # labels ("CALC M") of abnormalities with no centre or radius

    @property
    def abnormal(self) -> bool:
        return bool(self.lesions or self.unlocalised)


def read_mias_info(path: str | Path, image_height: int = 1024) -> dict[str, MiasFilm]:
    """Films of the MIAS info file (rows ``refnum tissue class [severity [x y radius]]``), keyed by refnum.

    MIAS measures y from the bottom of the image; it is converted to a row from the top as
    ``row = image_height - y``. Several rows with one refnum are several lesions. Abnormal rows without
    coordinates go to ``MiasFilm.unlocalised`` so such films are not mistaken for normal ones.

    Args:
        path: the info file (``Info.txt``), whitespace-separated; a ``REFNUM ...`` header line is skipped.
        image_height: height in pixels of the images the coordinates refer to (1024 for MIAS).
    """
    path = Path(path)
    films: dict[str, dict[str, Any]] = {}
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        fields = text.split()
        if not fields or fields[0].upper() == "REFNUM":
            continue
        if len(fields) not in (3, 4, 7):
            raise AnnotationError(
                path, f"line {line}: expected 'refnum tissue class [severity [x y radius]]', got {text.strip()!r}"
            )
        refnum, tissue, kind = fields[:3]
        film = films.setdefault(refnum, {"tissue": tissue, "lesions": [], "unlocalised": [], "normal": False})
        if kind.upper() == "NORM":
            if len(fields) > 3:
                raise AnnotationError(path, f"line {line}: normal film {refnum} has abnormality fields")
            film["normal"] = True
        else:
            label = " ".join(fields[2:4])
            if len(fields) == 7:
                row = dict(zip(("x", "y", "radius"), fields[4:], strict=True))
                x, y, radius = (number_field(row, column, path, line) for column in ("x", "y", "radius"))
                film["lesions"].append(_circle(x, image_height - y, radius, label, path, line))
            else:
                film["unlocalised"].append(label)
        if film["normal"] and (film["lesions"] or film["unlocalised"]):
            raise AnnotationError(path, f"line {line}: film {refnum} is listed both as normal and as abnormal")
    if not films:
        raise AnnotationError(path, "empty file: no MIAS films listed")
    return {
        refnum: MiasFilm(refnum, film["tissue"], tuple(film["lesions"]), tuple(film["unlocalised"]))
        for refnum, film in films.items()
    }
