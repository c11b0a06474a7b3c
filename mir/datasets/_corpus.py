"""Index of the works in the music21 corpus that the demo collection draws from.

The index is built by reading file names and ABC/Humdrum headers only (no score parsing), so
it takes about a second. Each :class:`Work` carries its style class (the genre), where it
comes from, and the *group* of works that must stay in one split (e.g. every movement of a
quartet, every variant of one folk song, the same tune printed in two collections).

Splits are a pure function of the index: within each class, groups are ranked by a stable
hash and the first 15 % go to ``test``, the next 15 % to ``valid``, the rest to ``train``.
They never depend on the seed or the dataset size, so they are stable across rebuilds.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DatasetError

INDEX_VERSION = 1
SPLITS = ("train", "valid", "test")
TEST_FRACTION = 0.15
VALID_FRACTION = 0.15


@dataclass(frozen=True)
class Work:
    """One score (or one tune inside a multi-tune ABC file) in the music21 corpus."""

    work_id: str  # "<corpus-relative path>" or "<path>#<ordinal>" for ABC tunes
    genre: str
    collection: str  # album: the source collection
    composer: str  # artist: composer, or the collection for anonymous folk music
    title: str
    path: str  # relative to the music21 corpus root
    ordinal: int  # tune ordinal inside an ABC file (0-based), -1 for whole files
    group: str  # works of one group always share a split
    size: int  # characters (ABC tune) or bytes (file): a rough cost of parsing
    split: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def corpus_root() -> Path:
    """The folder of the music21 corpus shipped with the installed music21 package."""
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - music21 is a hard dependency
        raise DatasetError("the demo collection needs the music21 package (pip install music21)") from exc
    root = Path(music21.__file__).resolve().parent / "corpus"
    if not root.is_dir():
        raise DatasetError(f"music21 corpus folder not found at {root}; reinstall music21 (the corpus ships in its wheel)")
    return root


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is the same on every machine and Python run."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def _norm_title(title: str) -> str:
    t = title.lower()
    t = re.sub(r"\b(the|a|reel|jig|double|single|slip|hornpipe|clog|strathspey|no|[ivx]+)\b", " ", t)
    return re.sub(r"[^a-z]+", "", t) or title.lower()


# --- ABC folk collections -----------------------------------------------------------------------
_ABC_FOLK = {
    "ryansMammoth": "Ryan's Mammoth Collection (1883)",
    "oneills1850": "O'Neill's Music of Ireland (1850 tunes)",
    "airdsAirs": "Aird's Selection of Airs",
    "miscFolk": "Miscellaneous folk tunes",
}
_ESSEN_GERMAN = (
    "altdeu10", "altdeu20", "ballad10", "ballad20", "ballad30", "ballad40", "ballad50", "ballad60",
    "ballad70", "ballad80", "boehme10", "boehme20", "dva0", "erk10", "erk20", "erk30", "erk5",
    "fink0", "kinder0", "zuccal0",
)
_ESSEN_CHINESE = ("han1", "han2")
_DUPLE = {"C", "C|", "2/4", "4/4", "2/2"}


def _split_abc(text: str) -> tuple[str, list[str]]:
    """File header (before the first X:) and the list of tune texts."""
    chunks = re.split(r"\n(?=X:)", "\n" + text.replace("\r\n", "\n"))
    header, tunes = "", []
    for chunk in chunks:
        stripped = chunk.lstrip("\n")
        if stripped.startswith("X:"):
            tunes.append(stripped)
        elif not tunes:
            header += chunk
    return header.strip("\n"), tunes


def abc_tune_text(root: Path, path: str, ordinal: int) -> str:
    """The ABC text of one tune of a corpus file, with the file header's default fields."""
    text = (root / path).read_text(encoding="latin-1")
    header, tunes = _split_abc(text)
    if not 0 <= ordinal < len(tunes):
        raise DatasetError(f"{path}: tune #{ordinal} not found (file holds {len(tunes)} tunes)")
    defaults = "\n".join(ln for ln in header.splitlines() if re.match(r"^[LMKQR]:", ln))
    tune = tunes[ordinal]
    if defaults:
        first, _, rest = tune.partition("\n")
        tune = f"{first}\n{defaults}\n{rest}"
    return tune


def _field(tune: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*?)\s*$", tune, re.M)
    return m.group(1) if m else ""


def _dance_class(rhythm: str, title: str, meter: str) -> str | None:
    text = (rhythm or title).lower()
    if "slip" in text or ("jig" in text and meter == "9/8"):
        return "slip_jig" if meter == "9/8" else None
    if "jig" in text:
        return "jig" if meter == "6/8" else None
    if "hornpipe" in text or "clog" in text:
        return "hornpipe" if meter in _DUPLE else None
    if "strathspey" in text:
        return "strathspey" if meter in _DUPLE else None
    if "reel" in text:
        return "reel" if meter in _DUPLE else None
    return None


def _abc_works(root: Path) -> list[Work]:
    works = []
    for folder, coll_name in _ABC_FOLK.items():
        for f in sorted((root / folder).glob("*.abc")):
            rel = f.relative_to(root).as_posix()
            _, tunes = _split_abc(f.read_text(encoding="latin-1"))
            for i, tune in enumerate(tunes):
                title = _field(tune, "T") or f"{f.stem} #{i + 1}"
                genre = _dance_class(_field(tune, "R"), title, _field(tune, "M"))
                if genre is None:
                    continue
                works.append(Work(
                    work_id=f"{rel}#{i}", genre=genre, collection=f"{coll_name} - {f.stem}" if folder != "ryansMammoth" else coll_name,
                    composer=coll_name, title=title, path=rel, ordinal=i,
                    group=f"tune:{_norm_title(title)}", size=len(tune),
                ))
    essen = root / "essenFolksong"
    for names, genre, coll_name in ((_ESSEN_GERMAN, "german_folk", "Essen Folksong Collection (Germany)"),
                                    (_ESSEN_CHINESE, "chinese_folk", "Essen Folksong Collection (China)")):
        for stem in names:
            f = essen / f"{stem}.abc"
            if not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            _, tunes = _split_abc(f.read_text(encoding="latin-1"))
            for i, tune in enumerate(tunes):
                title = _field(tune, "T").title() or f"{stem} #{i + 1}"
                works.append(Work(
                    work_id=f"{rel}#{i}", genre=genre, collection=f"{coll_name} - {stem}", composer=coll_name,
                    title=title, path=rel, ordinal=i, group=f"song:{genre}:{_norm_title(title)}", size=len(tune),
                ))
    return works


# --- art music ------------------------------------------------------------------------------------
def _chorales(root: Path) -> list[Work]:
    works = []
    for f in sorted((root / "bach").iterdir()):
        m = re.match(r"^bwv(\d+(?:\.\d+)?)(-[a-z0-9]+)?\.(mxl|xml)$", f.name)
        if not m or m.group(1) == "846" or (m.group(2) or "") == "-inst":
            continue
        rel = f.relative_to(root).as_posix()
        works.append(Work(
            work_id=rel, genre="chorale", collection="Bach: 371 four-part chorales", composer="Johann Sebastian Bach",
            title=f"Chorale BWV {m.group(1)}{m.group(2) or ''}", path=rel, ordinal=-1,
            group=f"bwv:{m.group(1)}", size=f.stat().st_size,
        ))
    return works


def _masses(root: Path) -> list[Work]:
    works = []
    for f in sorted((root / "palestrina").glob("*.krn")):
        head = f.read_text(encoding="latin-1", errors="replace")[:2000]
        mass = _humdrum_ref(head, "OPR") or "Missa"
        section = _humdrum_ref(head, "OTL") or f.stem
        rel = f.relative_to(root).as_posix()
        works.append(Work(
            work_id=rel, genre="mass", collection="Palestrina: masses", composer="Giovanni Pierluigi da Palestrina",
            title=f"{mass}: {section}", path=rel, ordinal=-1, group=f"mass:{mass}", size=f.stat().st_size,
        ))
    return works


def _humdrum_ref(head: str, key: str) -> str:
    m = re.search(rf"^!!!{key}:\s*(.*?)\s*$", head, re.M)
    return m.group(1) if m else ""


def _madrigals(root: Path) -> list[Work]:
    works = []
    for f in sorted((root / "monteverdi").glob("madrigal.*.mxl")):
        _, book, num = f.stem.split(".")
        rel = f.relative_to(root).as_posix()
        works.append(Work(
            work_id=rel, genre="madrigal", collection="Monteverdi: madrigals", composer="Claudio Monteverdi",
            title=f"Madrigal, book {book}, no. {num}", path=rel, ordinal=-1, group=f"madrigal:{f.stem}",
            size=f.stat().st_size,
        ))
    return works


_QUARTETS = {"beethoven": "Ludwig van Beethoven", "mozart": "Wolfgang Amadeus Mozart", "haydn": "Joseph Haydn"}


def _quartets(root: Path) -> list[Work]:
    works = []
    for folder, composer in _QUARTETS.items():
        base = root / folder
        files = sorted(p for p in base.rglob("*") if p.suffix == ".mxl")
        for f in files:
            rel = f.relative_to(root).as_posix()
            opus = f.parent.name if f.parent != base else f.stem
            if opus == "k545":  # a piano sonata, not a quartet
                continue
            movement = f.stem if f.parent != base else ""
            title = f"String quartet {opus}" + (f", {movement.replace('movement', 'movement ')}" if movement else "")
            works.append(Work(
                work_id=rel, genre="string_quartet", collection="String quartets (Haydn, Mozart, Beethoven)",
                composer=composer, title=title, path=rel, ordinal=-1, group=f"quartet:{folder}:{opus}",
                size=f.stat().st_size,
            ))
    return works


def build_index(root: Path | None = None, *, genres: tuple[str, ...] | None = None) -> list[Work]:
    """Every usable work of the corpus with its class (``top/leaf``) and split, sorted by ``work_id``."""
    root = corpus_root() if root is None else Path(root)
    works = _abc_works(root) + _chorales(root) + _masses(root) + _madrigals(root) + _quartets(root)
    from ._spec import GENRE_OF_LEAF

    works = [Work(**{**w.as_dict(), "genre": GENRE_OF_LEAF[w.genre]}) for w in works]  # two-level: folk/reel
    if genres is not None:
        works = [w for w in works if w.genre in genres]
    works.sort(key=lambda w: w.work_id)
    return assign_splits(works)


def assign_splits(works: list[Work]) -> list[Work]:
    """Give each work the split of its group: per class, ranked by a stable hash of the group.

    A group spanning several classes (the same tune labelled differently in two collections)
    is ranked in the class of its first work, so all its works share one split.
    """
    primary: dict[str, str] = {}
    for w in works:
        primary.setdefault(w.group, w.genre)
    by_class: dict[str, list[str]] = {}
    for group, genre in primary.items():
        by_class.setdefault(genre, []).append(group)
    split_of: dict[str, str] = {}
    for genre, groups in by_class.items():
        groups.sort(key=lambda g: (stable_hash("split", g), g))
        n = len(groups)
        n_test = max(1, round(TEST_FRACTION * n)) if n >= 3 else 0
        n_valid = max(1, round(VALID_FRACTION * n)) if n >= 3 else 0
        for i, g in enumerate(groups):
            split_of[g] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return [Work(**{**w.as_dict(), "split": split_of[w.group]}) for w in works]


def music21_version() -> str:
    import music21

    return str(music21.__version__)


def index_fingerprint() -> str:
    """Changes whenever the corpus (music21 version) or the index rules change."""
    return f"v{INDEX_VERSION}-music21-{music21_version()}"
