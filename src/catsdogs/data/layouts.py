"""How a source of photos says which photo is which class: its layout.

Reads the file names under one source's folder (no pixel); returns its layout and, for each
file, its label (or why it has none) and the split the source gives it (only the tutorial's
layout gives one). The layouts, tried in this order, the first that fits wins:

- `tutorial`: `train/` and `validation/`, each with a folder per class (`cats/`, `dogs/`), at
  the top or in the only folder there: the split is the source's own.
- `class_folders`: folders named for a class at any depth (`cats/`, `Dog/`, `pets/cat/`); a
  file takes the class of the nearest such folder above it, else the class its name starts
  with, as below.
- `name_prefix`: files whose names start with a class name (`cat.123.jpg`, `dog_5.png`,
  `Cats-01.jpg`): the Kaggle Dogs vs. Cats layout.

Which folder names and name prefixes mean which class is `split.class_names`, matched
without regard to case. Hidden files and folders (a leading '.') and macOS' `__MACOSX/`
archive debris are not photos and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from catsdogs.core.errors import UserError
from catsdogs.data.manifest import LABELS, SOURCE_SPLITS

# The class names used when params give none: singular and plural, any case.
DEFAULT_CLASS_NAMES: dict[str, tuple[str, ...]] = {"cat": ("cat", "cats"), "dog": ("dog", "dogs")}

LAYOUTS = {
    "tutorial": "train/ and validation/, each with a folder per class (the tutorial's; its "
                "split is kept)",
    "class_folders": "a folder per class at any depth (cats/, Dog/, pets/cat/...)",
    "name_prefix": "files named for their class (cat.123.jpg, dog_5.png)",
}
NO_LABEL = "no label"


class LayoutError(UserError, ValueError):
    """A source fits no layout, or its tutorial layout is incomplete; or class names clash."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: its path, its label (None: no rule labels it, `reason` says
    why) and the split the source gives it (None: the split stage decides)."""

    path: Path
    label: str | None
    given_split: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Layout:
    """A source's layout, the folder it applies to, and its files in path order."""

    name: str
    root: Path
    files: tuple[SourceFile, ...]

    @property
    def labelled(self) -> list[SourceFile]:
        return [f for f in self.files if f.label is not None]


def check_class_names(class_names: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{lower-case name: label} from {label: names}; refuses unknown labels and clashes."""
    if sorted(class_names) != sorted(LABELS):
        raise LayoutError(f"split.class_names must give names for exactly {', '.join(LABELS)}; "
                          f"got {', '.join(map(str, class_names)) or 'none'}")
    by_name: dict[str, str] = {}
    for label, names in class_names.items():
        if not names:
            raise LayoutError(f"split.class_names.{label} is empty; give at least one name")
        for name in names:
            key = str(name).strip().lower()
            if not key:
                raise LayoutError(f"split.class_names.{label} holds an empty name")
            if by_name.get(key, label) != label:
                raise LayoutError(f"split.class_names gives '{name}' to both {by_name[key]} and "
                                  f"{label}; a name can mean one class only")
            by_name[key] = label
    return by_name


def is_hidden(relative: Path) -> bool:
    """Whether a path under a source is not a photo: hidden (a leading '.') or macOS'
    `__MACOSX/` archive debris, anywhere in it."""
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def list_files(root: Path) -> list[Path]:
    """Every file under `root` that could be a photo, in path order."""
    return sorted(p for p in root.rglob("*")
                  if not is_hidden(p.relative_to(root)) and not p.is_dir())


def _tutorial_root(root: Path) -> Path | None:
    def fits(path: Path) -> bool:
        return all((path / name).is_dir() for name in SOURCE_SPLITS)

    if fits(root):
        return root
    candidates = [p for p in root.iterdir() if p.is_dir() and fits(p)]
    return candidates[0] if len(candidates) == 1 else None


def _tutorial(root: Path, by_name: Mapping[str, str]) -> Layout:
    """The tutorial's layout: each split folder must have one non-empty folder per class."""
    files = []
    for split in SOURCE_SPLITS:
        split_dir = root / split
        folders: dict[str, Path] = {}
        for child in sorted(split_dir.iterdir()):
            label = by_name.get(child.name.lower()) if child.is_dir() else None
            if label is not None:
                if label in folders:
                    raise LayoutError(f"'{split_dir}' has two folders for {label}: "
                                      f"{folders[label].name}/ and {child.name}/; merge them")
                folders[label] = child
        for label in LABELS:
            if label not in folders:
                raise LayoutError(f"class folder for {label} is missing in '{split_dir}' "
                                  f"(looked for {_names_of(by_name, label)})")
            class_files = [p for p in list_files(folders[label]) if p.parent == folders[label]]
            if not class_files:
                raise LayoutError(f"class folder '{folders[label]}' is empty")
            files += [SourceFile(p, label, split) for p in class_files]
    covered = {f.path for f in files}
    files += [SourceFile(p, None, reason=f"{NO_LABEL}: not in a class folder of "
                         f"{'/ or '.join(SOURCE_SPLITS)}/")
              for p in list_files(root) if p not in covered]
    return Layout("tutorial", root, tuple(sorted(files, key=lambda f: f.path)))


def _folder_label(relative: Path, by_name: Mapping[str, str]) -> str | None:
    for folder in reversed(relative.parent.parts):  # the nearest class folder wins
        label = by_name.get(folder.lower())
        if label is not None:
            return label
    return None


def _prefix_pattern(by_name: Mapping[str, str]) -> re.Pattern[str]:
    # Longest names first, so that 'cats_1.jpg' reads as 'cats', not 'cat' then 's'; a name
    # must be followed by a non-letter, so 'category.jpg' and 'dogma.png' are not labelled.
    names = sorted(by_name, key=len, reverse=True)
    return re.compile(r"^(" + "|".join(map(re.escape, names)) + r")(?![a-z])", re.IGNORECASE)


def read_layout(root: Path, class_names: Mapping[str, Sequence[str]] = DEFAULT_CLASS_NAMES
                ) -> Layout:
    """The layout of the source at `root` and every file's label; LayoutError when none fits,
    saying what was found and which layouts are accepted."""
    by_name = check_class_names(class_names)
    if not root.is_dir():
        raise LayoutError(f"'{root}' is not a folder")
    tutorial_root = _tutorial_root(root)
    if tutorial_root is not None:
        return _tutorial(tutorial_root, by_name)
    paths = list_files(root)
    prefix = _prefix_pattern(by_name)
    by_folder = {p: _folder_label(p.relative_to(root), by_name) for p in paths}
    by_prefix = {p: by_name[m.group(1).lower()] if m else None for p in paths
                 for m in [prefix.match(p.name)]}
    if any(by_folder.values()):
        # Files outside the class folders still take their name's class, if it names one.
        return Layout("class_folders", root, tuple(
            SourceFile(p, by_folder[p] or by_prefix[p],
                       reason=None if by_folder[p] or by_prefix[p] else
                       f"{NO_LABEL}: neither in a class folder nor named for a class")
            for p in paths))
    if any(by_prefix.values()):
        return Layout("name_prefix", root, tuple(
            SourceFile(p, label,
                       reason=None if label else f"{NO_LABEL}: the file name starts with no class name")
            for p, label in by_prefix.items()))
    raise LayoutError(_no_layout_message(root, paths, by_name))


def _names_of(by_name: Mapping[str, str], label: str) -> str:
    return ", ".join(f"{name}/" for name, of in by_name.items() if of == label)


def _no_layout_message(root: Path, paths: list[Path], by_name: Mapping[str, str]) -> str:
    folders = sorted({p.relative_to(root).parent.as_posix() for p in paths})
    examples = ", ".join(p.relative_to(root).as_posix() for p in paths[:3])
    found = (f"{len(paths)} file(s) in {len(folders)} folder(s)"
             + (f", e.g. {examples}" if examples else ""))
    accepted = "; ".join(f"{name}: {what}" for name, what in LAYOUTS.items())
    names = "; ".join(f"{label}: {', '.join(n for n, of in by_name.items() if of == label)}"
                      for label in LABELS)
    return (f"no layout fits the photos in '{root}': found {found}. Accepted layouts: "
            f"{accepted}. Class names (split.class_names, any case): {names}.")
