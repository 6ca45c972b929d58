"""A plain atom model: positions in Angstrom, element symbols and per-atom features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm "
    "Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U "
    "Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(_SYMBOLS, start=1)}

#: Display colours (hex) for common AET elements; others fall back to grey.
ELEMENT_COLORS = {
    "O": "#ff3b30", "Si": "#f0c419", "Zr": "#34c759", "Fe": "#ff9500", "Pt": "#5ac8fa",
    "Pd": "#af52de", "Au": "#ffd60a", "Ni": "#30b0c7", "Co": "#ff2d55", "C": "#8e8e93",
    "X": "#ffffff",
}


def atomic_numbers(elements) -> np.ndarray:
    """Atomic numbers for an array of element symbols; raises on an unknown symbol."""
    elements = np.asarray(elements)
    unknown = sorted({str(e) for e in np.unique(elements)} - ATOMIC_NUMBER.keys())
    if unknown:
        raise ValueError(f"unknown element symbol(s): {', '.join(unknown)}")
    return np.array([ATOMIC_NUMBER[str(e)] for e in elements], dtype=int)


def normalize_symbol(symbol: str) -> str:
    """``'zr'`` -> ``'Zr'``; raises ``ValueError`` for something that is not an element."""
    s = str(symbol).strip()
    s = s[:1].upper() + s[1:].lower()
    if s not in ATOMIC_NUMBER:
        raise ValueError(f"{symbol!r} is not an element symbol")
    return s


@dataclass
class Atoms:
    """Atom positions ``(n, 3)`` as (z, y, x) in Angstrom with element symbols and features.

    ``features`` maps a name to a length-``n`` array (phase label, intensity, ...). The
    positions are in the frame of the volume they belong to: voxel ``(0, 0, 0)`` is at the
    origin and voxel ``i`` sits at ``i * pixel_size_A``.
    """

    positions: np.ndarray
    elements: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=float).reshape(-1, 3)
        self.elements = np.asarray(self.elements, dtype="<U3").reshape(-1)
        if len(self.elements) != len(self.positions):
            raise ValueError(
                f"{len(self.positions)} positions but {len(self.elements)} element symbols"
            )
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("atom positions contain NaN or infinite values")
        for name, values in list(self.features.items()):
            values = np.asarray(values)
            if len(values) != len(self.positions):
                raise ValueError(
                    f"feature {name!r} has {len(values)} values for {len(self.positions)} atoms"
                )
            self.features[name] = values

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def xyz(self) -> np.ndarray:
        """Positions as (x, y, z) in Angstrom, the order used by coordinate files."""
        return self.positions[:, ::-1].copy()

    @property
    def atomic_numbers(self) -> np.ndarray:
        return atomic_numbers(self.elements)

    def select(self, mask_or_index) -> Atoms:
        """A new ``Atoms`` with the chosen rows (boolean mask or index array)."""
        idx = np.asarray(mask_or_index)
        return Atoms(
            self.positions[idx].copy(),
            self.elements[idx].copy(),
            {k: v[idx].copy() for k, v in self.features.items()},
        )

    def shifted(self, offset_zyx) -> Atoms:
        """A copy with every position moved by ``offset_zyx`` Angstrom."""
        return Atoms(
            self.positions + np.asarray(offset_zyx, dtype=float),
            self.elements.copy(),
            {k: v.copy() for k, v in self.features.items()},
        )

    @staticmethod
    def concatenate(parts: list[Atoms]) -> Atoms:
        """Join atom models; features missing from a part are filled with empty/NaN values."""
        names = sorted({k for p in parts for k in p.features})
        feats = {}
        for name in names:
            cols = []
            for p in parts:
                if name in p.features:
                    cols.append(p.features[name])
                else:
                    ref = next(q.features[name] for q in parts if name in q.features)
                    fill = "" if ref.dtype.kind in "US" else np.nan
                    cols.append(np.full(len(p), fill, dtype=ref.dtype if fill == "" else float))
            feats[name] = np.concatenate(cols)
        return Atoms(
            np.concatenate([p.positions for p in parts]) if parts else np.zeros((0, 3)),
            np.concatenate([p.elements for p in parts]) if parts else np.zeros(0, "<U3"),
            feats,
        )

    def counts(self) -> dict[str, int]:
        """Number of atoms per element."""
        symbols, n = np.unique(self.elements, return_counts=True)
        return {str(s): int(c) for s, c in zip(symbols, n)}
