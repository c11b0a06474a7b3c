"""Key names: the 12 pitch classes as descriptors report tonics, and the spelling musicians write
for each key (numpy-free, so front ends print keys without loading the analysis stack)."""
from __future__ import annotations

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# the tonic as the key signature with fewer accidentals spells it (F♯ major, E♭ minor: six either way)
_MAJOR = ("C", "D♭", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B")
_MINOR = ("C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "G♯", "A", "B♭", "B")


def key_name(tonic: str | None, mode: str | None) -> str | None:
    """``("A#", "major")`` -> ``"B♭ major"``; ``("D#", "minor")`` -> ``"E♭ minor"``; None when unknown."""
    if tonic not in PITCH_CLASSES:
        return None
    pc = PITCH_CLASSES.index(tonic)
    if mode == "major":
        return f"{_MAJOR[pc]} major"
    if mode == "minor":
        return f"{_MINOR[pc]} minor"
    return tonic.replace("#", "♯")
