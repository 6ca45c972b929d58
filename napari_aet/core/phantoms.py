"""Phantom nanoparticles with known atoms, phases and planted voids (the ground truth of tests).

Every phantom is centred on the origin; positions are (z, y, x) in Angstrom. Everything is
seeded: the same arguments give the same atoms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from napari_aet.core.atoms import Atoms

PHASES = ("metal", "crystalline_oxide", "amorphous_oxide")

# Fractional positions (x, y, z) in a cubic cell.
_FCC = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
_TETRAHEDRAL = np.array([[i, j, k] for i in (0.25, 0.75) for j in (0.25, 0.75) for k in (0.25, 0.75)])


@dataclass
class PlantedVoid:
    """A void planted in a phantom.

    ``kind`` is ``"vacancy"`` (one Zr removed) or ``"nano-pore"`` (all atoms in a sphere
    removed); ``center`` is (z, y, x) in Angstrom; ``volume_A3`` is the volume of the Delaunay
    tetrahedra of the remaining Zr whose circumcentres lie in the emptied region (see
    ``_void_volume``): 110 A^3 for a vacancy in cubic ZrO2.
    """

    kind: str
    center: np.ndarray
    radius_A: float
    volume_A3: float
    n_zr_removed: int


@dataclass
class Phantom:
    """Atoms of a phantom particle (centred on the origin) and its planted voids."""

    name: str
    atoms: Atoms
    voids: list[PlantedVoid] = field(default_factory=list)
    description: str = ""


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def cubic_lattice(basis: np.ndarray, a: float, half_extent: float, rotation=None,
                  offset=None) -> np.ndarray:
    """Points (x, y, z) of a cubic lattice with fractional ``basis`` within ``half_extent``."""
    n = int(np.ceil(half_extent * np.sqrt(3) / a)) + 1
    cells = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pts = ((cells[:, None, :] + basis[None]) * a).reshape(-1, 3)
    if offset is not None:
        pts = pts + offset
    if rotation is not None:
        pts = pts @ rotation.T
    return pts[np.all(np.abs(pts) <= half_extent, axis=1)]


def _relax_springs(pos, pairs, d0, k, fixed=None, steps=400, lr=0.08):
    """Gradient descent on sum k (|ri - rj| - d0)^2; ``fixed`` rows do not move."""
    pos = pos.copy()
    i, j = pairs.T
    for _ in range(steps):
        d = pos[i] - pos[j]
        r = np.linalg.norm(d, axis=1) + 1e-12
        g = (2 * k * (r - d0) / r)[:, None] * d
        grad = np.zeros_like(pos)
        for axis in range(3):
            grad[:, axis] = np.bincount(i, g[:, axis], len(pos)) - np.bincount(j, g[:, axis], len(pos))
        if fixed is not None:
            grad[fixed] = 0
        pos -= lr * np.clip(grad, -1, 1)
    return pos


def _soft_sphere_relax(pos, d0, movable, steps=150, lr=0.25, inside=None):
    """Push apart pairs closer than ``d0`` (Angstrom); only ``movable`` atoms move.

    ``inside(pos) -> (mask, normal)`` keeps moved atoms in their region by projecting back.
    """
    pos = pos.copy()
    for step in range(steps):
        if step % 10 == 0:
            pairs = cKDTree(pos).query_pairs(d0 * 1.3, output_type="ndarray")
        i, j = pairs.T
        d = pos[i] - pos[j]
        r = np.linalg.norm(d, axis=1) + 1e-12
        f = np.where(r < d0, (d0 - r) / r, 0.0)[:, None] * d
        move = np.zeros_like(pos)
        for axis in range(3):
            move[:, axis] = np.bincount(i, f[:, axis], len(pos)) - np.bincount(j, f[:, axis], len(pos))
        move[~movable] = 0
        pos += lr * np.clip(move, -0.5, 0.5)
        if inside is not None:
            pos[movable] = inside(pos[movable])
    return pos


def fcc_particle(element: str = "Pt", lattice_A: float = 3.92, radius_A: float = 8.0,
                 seed: int = 0) -> Phantom:
    """A small spherical fcc particle (about 140 Pt atoms by default) for fast tests."""
    rng = np.random.default_rng(seed)
    xyz = cubic_lattice(_FCC, lattice_A, radius_A + lattice_A, rotation=random_rotation(rng))
    xyz = xyz[np.linalg.norm(xyz, axis=1) <= radius_A]
    atoms = Atoms(xyz[:, ::-1], np.full(len(xyz), element),
                  {"phase": np.full(len(xyz), "metal")})
    return Phantom("fcc_particle", atoms,
                   description=f"{element} fcc sphere, a = {lattice_A} A, radius {radius_A} A")


def silica_glass(seed: int = 0, n_si: int = 334, cube_A: float = 24.7,
                 disorder_A: float = 0.35) -> Phantom:
    """Amorphous SiO2: a strongly perturbed, relaxed cristobalite network in a cube.

    ``n_si`` Si and exactly ``2 * n_si`` O (the published test particle: 334 Si + 668 O in a
    24.7 Angstrom cube). Si-O about 1.61, O-O about 2.63, Si-Si about 3.1 Angstrom, with
    Si-O-Si angles drawn from 135-175 degrees and ``disorder_A`` random displacements relaxed
    by a bond-spring model; no pair closer than 1.4 Angstrom.
    """
    rng = np.random.default_rng(seed)
    a = (8 * cube_A**3 / n_si) ** (1 / 3)  # diamond Si lattice at the target density
    offset = rng.uniform(0, a, 3)
    sub_a = cubic_lattice(_FCC, a, cube_A, offset=offset)
    sub_b = cubic_lattice(_FCC + 0.25, a, cube_A, offset=offset)
    si = np.concatenate([sub_a, sub_b])
    sublattice = np.repeat([0, 1], [len(sub_a), len(sub_b)])
    order = np.argsort(np.max(np.abs(si), axis=1) + rng.uniform(0, 1e-3, len(si)))[:n_si]
    si, sublattice = si[order], sublattice[order]
    bond = a * np.sqrt(3) / 4
    bonds = cKDTree(si).query_pairs(bond * 1.05, output_type="ndarray")
    # Dangling bonds of surface Si: the four tetrahedral directions without a partner.
    dirs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    partner = cKDTree(si)
    dangling = []
    for s, sign in ((0, 1), (1, -1)):
        for dvec in dirs:
            ends = si[sublattice == s] + sign * dvec * bond
            dist, _ = partner.query(ends)
            owners = np.flatnonzero(sublattice == s)[dist > 0.3]
            dangling += [(o, sign * dvec) for o in owners]
    n_terminal = 2 * n_si - len(bonds)
    pick = rng.choice(len(dangling), size=n_terminal, replace=False)
    # Amorphise: displace Si, bend every Si-O-Si bridge.
    si = si + rng.normal(0, disorder_A, si.shape)
    mid = 0.5 * (si[bonds[:, 0]] + si[bonds[:, 1]])
    o_bridge = mid + rng.normal(0, 0.5, mid.shape)
    o_term = np.array([si[dangling[p][0]] + dangling[p][1] * 1.61 for p in pick]).reshape(-1, 3)
    o_owner = np.array([dangling[p][0] for p in pick], dtype=int)
    pos = np.concatenate([si, o_bridge, o_term])
    n_o = len(pos) - n_si
    o_idx = n_si + np.arange(n_o)
    so_pairs = np.concatenate([
        np.stack([bonds[:, 0], o_idx[: len(bonds)]], 1),
        np.stack([bonds[:, 1], o_idx[: len(bonds)]], 1),
        np.stack([o_owner, o_idx[len(bonds):]], 1),
    ])
    # O-O edges of each tetrahedron: O pairs sharing a Si.
    oo = []
    for s in range(n_si):
        os_ = so_pairs[so_pairs[:, 0] == s, 1]
        oo += [(p, q) for k, p in enumerate(os_) for q in os_[k + 1:]]
    oo = np.array(oo, dtype=int).reshape(-1, 2)
    angles = np.deg2rad(rng.uniform(135, 175, len(bonds)))
    sisi_d0 = 2 * 1.61 * np.sin(angles / 2)
    pairs = np.concatenate([so_pairs, oo, bonds])
    d0 = np.concatenate([np.full(len(so_pairs), 1.61), np.full(len(oo), 2.63), sisi_d0])
    k = np.concatenate([np.full(len(so_pairs), 1.0), np.full(len(oo), 0.3), np.full(len(bonds), 0.2)])
    pos = _relax_springs(pos, pairs, d0, k, steps=600)
    # Non-bonded contacts: keep every pair at least 2.3 A (O-O) / 1.4 A (all) apart.
    for _ in range(3):
        close = cKDTree(pos).query_pairs(2.3, output_type="ndarray")
        bonded = {tuple(sorted(p)) for p in map(tuple, np.concatenate([so_pairs, bonds]))}
        extra = np.array([p for p in map(tuple, close) if tuple(sorted(p)) not in bonded],
                         dtype=int).reshape(-1, 2)
        if len(extra) == 0:
            break
        pairs2 = np.concatenate([pairs, extra])
        d02 = np.concatenate([d0, np.full(len(extra), 2.5)])
        k2 = np.concatenate([k, np.full(len(extra), 0.5 * (np.linalg.norm(
            pos[extra[:, 0]] - pos[extra[:, 1]], axis=1) < 2.5))])
        pos = _relax_springs(pos, pairs2, d02, k2, steps=200)
    pos -= pos.mean(axis=0)
    elements = np.array(["Si"] * n_si + ["O"] * n_o)
    atoms = Atoms(pos[:, ::-1], elements, {"phase": np.full(len(pos), "amorphous_oxide")})
    return Phantom("silica_glass", atoms,
                   description=f"amorphous SiO2, {n_si} Si + {n_o} O in a {cube_A} A cube")


def _void_volume(zr_xyz: np.ndarray, center_xyz: np.ndarray) -> float:
    """Volume (A^3) of the hole left by the removed Zr, tiled by the remaining atoms' tetrahedra.

    The hole is the union of the Delaunay tetrahedra of the remaining Zr whose circumcentres
    (the centres of their empty spheres, i.e. the Voronoi vertices) lie in the ball emptied of
    atoms: radius = distance to the nearest remaining Zr for a nano-pore, 1 Angstrom for a
    vacancy (the nearest Zr is a first neighbour, closer than 1.25 nearest-neighbour
    distances), which catches the 12-neighbour cuboctahedron of cubic ZrO2 (110 A^3).
    """
    tree = cKDTree(zr_xyz)
    d_min, nearest = tree.query(center_xyz)
    nn = tree.query(zr_xyz[nearest], k=2)[0][1]
    ball = 1.0 if d_min < 1.25 * nn else d_min
    local = zr_xyz[tree.query_ball_point(center_xyz, ball + 14.0)]
    tri = Delaunay(local)
    tets = local[tri.simplices]
    centre, _ = _circumspheres(tets)
    inside = np.linalg.norm(centre - center_xyz, axis=1) < ball
    a, b, c = (tets[inside, k] - tets[inside, 0] for k in (1, 2, 3))
    return float(np.abs(np.einsum("ij,ij->i", a, np.cross(b, c))).sum() / 6.0)


@dataclass
class _CoreShellRegions:
    """Regions of the Zr-ZrO2 phantom: 0 inside the core radius ``r_core_A``, else the region
    (1, 2 grains, 3 amorphous) of the seed direction closest to the point's direction."""

    seeds: np.ndarray
    r_core_A: float
    region_of_seed: np.ndarray = field(default_factory=lambda: np.array([1, 2, 3, 3]))

    def __call__(self, xyz: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(xyz, axis=1)
        dirs = xyz / np.maximum(r, 1e-9)[:, None]
        reg = self.region_of_seed[np.argmax(dirs @ self.seeds.T, axis=1)]
        return np.where(r < self.r_core_A, 0, reg)


def _in_sphere(xyz, radius_A):
    return np.linalg.norm(xyz, axis=1) <= radius_A


def _crystalline_parts(rng, regions: _CoreShellRegions, radius_A: float, metal_lattice_A: float,
                       oxide_lattice_A: float):
    """fcc Zr core and two cubic ZrO2 grains in random orientations.

    Returns Zr positions and regions (Zr colliding across a region boundary removed, the core
    keeping priority) and the grains' oxygen positions and regions (x, y, z Angstrom).
    """
    core = cubic_lattice(_FCC, metal_lattice_A, radius_A + 6, rotation=random_rotation(rng),
                         offset=rng.uniform(0, metal_lattice_A, 3))
    core = core[(regions(core) == 0)]
    zr_parts, o_parts = [core], []
    labels_zr, labels_o = [np.zeros(len(core), int)], []
    for g in (1, 2):
        rot = random_rotation(rng)
        off = rng.uniform(0, oxide_lattice_A, 3)
        zr = cubic_lattice(_FCC, oxide_lattice_A, radius_A + 6, rotation=rot, offset=off)
        ox = cubic_lattice(_TETRAHEDRAL, oxide_lattice_A, radius_A + 6, rotation=rot, offset=off)
        zr = zr[_in_sphere(zr, radius_A) & (regions(zr) == g)]
        ox = ox[_in_sphere(ox, radius_A) & (regions(ox) == g)]
        zr_parts.append(zr), labels_zr.append(np.full(len(zr), g))
        o_parts.append(ox), labels_o.append(np.full(len(ox), g))
    zr = np.concatenate(zr_parts)
    zr_label = np.concatenate(labels_zr)
    tree_pairs = cKDTree(zr).query_pairs(2.9, output_type="ndarray")
    drop = np.zeros(len(zr), bool)
    for i, j in tree_pairs:
        if zr_label[i] != zr_label[j] and not (drop[i] or drop[j]):
            drop[max(i, j) if zr_label[i] == 0 or zr_label[j] == 0 else j] = True
    return zr[~drop], zr_label[~drop], np.concatenate(o_parts), np.concatenate(labels_o)


def _amorphous_zr(rng, regions: _CoreShellRegions, radius_A: float, zr, zr_label,
                  zr_zr_A: float):
    """Random Zr in region 3 at the cubic-ZrO2 density (0.0275 A^-3), relaxed against the
    fixed crystalline Zr; those still colliding are dropped. Returns all Zr, their regions and
    which are movable (amorphous)."""
    amorph_region_volume = np.mean(regions(rng.uniform(-radius_A, radius_A, (200000, 3))
                                           * np.array([1, 1, 1])) == 3) * (2 * radius_A) ** 3
    n_amorph = int(amorph_region_volume * 0.0275)
    cand = rng.uniform(-radius_A, radius_A, (n_amorph * 4, 3))
    cand = cand[_in_sphere(cand, radius_A - 0.5) & (regions(cand) == 3)][:n_amorph]

    def keep_in_region3(p):
        bad = (regions(p) != 3) | ~_in_sphere(p, radius_A - 0.3)
        p = p.copy()
        p[bad] = p[bad] * 0.995  # pull back towards the centre; relaxation does the rest
        return p

    all_zr = np.concatenate([zr, cand])
    movable = np.concatenate([np.zeros(len(zr), bool), np.ones(len(cand), bool)])
    all_zr = _soft_sphere_relax(all_zr, zr_zr_A + 0.1, movable, steps=200,
                                inside=keep_in_region3)
    labels = np.concatenate([zr_label, np.full(len(cand), 3)])
    pairs = cKDTree(all_zr).query_pairs(2.8, output_type="ndarray")
    drop = np.zeros(len(all_zr), bool)
    for i, j in pairs:
        if not (drop[i] or drop[j]):
            drop[j if movable[j] else i] = True
    return all_zr[~drop], labels[~drop], movable[~drop]


def _fill_holes(regions: _CoreShellRegions, radius_A: float, all_zr, labels, movable,
                zr_zr_A: float):
    """Add a Zr at every interior hole bigger than a vacancy (Delaunay circumradius above
    3.0 A, more than 4.5 A inside the surface), relaxing after each of up to 8 rounds."""
    for _ in range(8):
        tri = Delaunay(all_zr)
        centre, rad = _circumspheres(all_zr[tri.simplices])
        interior = np.linalg.norm(centre, axis=1) < radius_A - 4.5
        tree = cKDTree(all_zr)
        new = []
        for c in centre[(rad > 3.0) & interior]:
            if tree.query(c)[0] > 2.6 and all(np.linalg.norm(c - q) > 2.8 for q in new):
                new.append(c)
        if not new:
            break
        new = np.array(new)
        all_zr = np.concatenate([all_zr, new])
        labels = np.concatenate([labels, np.maximum(regions(new), 1)])
        movable = np.concatenate([movable, np.ones(len(new), bool)])
        all_zr = _soft_sphere_relax(all_zr, zr_zr_A - 0.1, movable, steps=40)
    return all_zr, labels, movable


def _amorphous_oxygen(rng, all_zr, labels):
    """Oxygen of the amorphous region at the centres of regular Zr tetrahedra (distortion up
    to 0.255, volume above 4.68 A^3), in random order, at least 1.9 A from Zr and 2.3 A from
    each other, at most 2 per amorphous Zr."""
    simp = Delaunay(all_zr).simplices
    verts = all_zr[simp]
    edges = np.linalg.norm(verts[:, [0, 0, 0, 1, 1, 2]] - verts[:, [1, 2, 3, 2, 3, 3]], axis=2)
    distortion = edges.max(1) / edges.mean(1) - 1
    vol = np.abs(np.einsum("ij,ij->i", verts[:, 1] - verts[:, 0],
                           np.cross(verts[:, 2] - verts[:, 0], verts[:, 3] - verts[:, 0]))) / 6
    amorph_tet = np.all(labels[simp] == 3, axis=1) & (distortion <= 0.255) & (vol > 4.68)
    o_am = verts[amorph_tet].mean(axis=1)
    o_am = o_am[rng.permutation(len(o_am))]
    keep, tree_zr = [], cKDTree(all_zr)
    placed = np.zeros((0, 3))
    o_budget = 2 * np.sum(labels == 3)
    for p in o_am:
        if len(keep) >= o_budget:
            break
        if tree_zr.query(p)[0] < 1.9:
            continue
        if len(placed) and np.min(np.linalg.norm(placed - p, axis=1)) < 2.3:
            continue
        keep.append(p)
        placed = np.concatenate([placed, p[None]])
    return np.array(keep).reshape(-1, 3)


def _pore_spheres(rng, radius_A: float, r_core_A: float, n_pores: int):
    """Up to ``n_pores`` spheres (centre x, y, z; radius 4.5-7 A) in the oxide shell, 7 A
    inside the surface, 6 A outside the core and 10 A apart."""
    centres: list[tuple[np.ndarray, float]] = []
    for _ in range(5000):
        if len([v for v in centres if v[1] > 0]) >= n_pores:
            break
        rp = rng.uniform(4.5, 7.0)
        c = rng.uniform(-radius_A, radius_A, 3)
        rc = np.linalg.norm(c)
        if not (rc + rp + 7 < radius_A and rc - rp - 6 > r_core_A):
            continue
        if any(np.linalg.norm(c - q) < rp + qr + 10 for q, qr in centres):
            continue
        centres.append((c, rp))
    return centres


def _vacancy_sites(rng, all_zr, labels, zr_alive, radius_A: float, r_core_A: float, pores,
                   n_vacancies: int) -> list[int]:
    """Indices of ``n_vacancies`` grain Zr to remove: 12 Zr neighbours, 5 A inside their grain,
    8 A beyond any pore and from each other; ValueError when there is no room."""
    r_all = np.linalg.norm(all_zr, axis=1)
    tree = cKDTree(all_zr)
    n_nn = np.array([len(x) - 1 for x in tree.query_ball_point(all_zr, 3.9)])
    cand = np.flatnonzero((np.isin(labels, (1, 2))) & (n_nn == 12) & zr_alive
                          & (r_all < radius_A - 7) & (r_all > r_core_A + 5))
    near = tree.query_ball_point(all_zr[cand], 5.5)
    cand = np.array([c for c, nb in zip(cand, near) if np.all(labels[nb] == labels[c])], int)
    rng.shuffle(cand)
    chosen: list[int] = []
    for c in cand:
        if len(chosen) >= n_vacancies:
            break
        p = all_zr[c]
        if any(np.linalg.norm(p - q) < qr + 8 for q, qr in pores):
            continue
        if chosen and np.min(np.linalg.norm(all_zr[chosen] - p, axis=1)) < 8.0:
            continue
        chosen.append(c)
    if len(chosen) < n_vacancies:
        raise ValueError(f"only room for {len(chosen)} isolated vacancies; use a larger particle")
    return chosen


def zr_core_shell(seed: int = 0, diameter_A: float = 86.0, core_fraction: float = 0.42,
                  n_vacancies: int = 55, n_pores: int = 4, metal_lattice_A: float = 4.60,
                  oxide_lattice_A: float = 5.09, amorphous_zr_zr_A: float = 3.45) -> Phantom:
    """A partially oxidised Zr particle: fcc Zr core, cubic ZrO2 grains, amorphous ZrO2.

    * core: fcc Zr (``metal_lattice_A`` 4.60 -> nearest neighbour 3.25 Angstrom) inside
      ``core_fraction * radius``;
    * shell: split by direction into two crystalline cubic ZrO2 grains (fluorite, Zr
      sublattice ``oxide_lattice_A`` 5.09, O at the 8 tetrahedral sites) in random
      orientations, and an amorphous ZrO2 region (relaxed dense random Zr packing with
      Zr-Zr about ``amorphous_zr_zr_A``; O in regular Zr tetrahedra, at most 2 O per Zr);
    * planted voids: ``n_pores`` nano-pores (spheres of radius 4.5-7 Angstrom emptied of
      atoms, 125-4500 A^3) in the oxide and ``n_vacancies`` isolated Zr vacancies in the
      crystalline grains. Apart from these, no empty region bigger than an interstitial:
      every Delaunay tetrahedron of Zr away from the surface has circumradius < 3.0 A.

    Features: ``phase`` (metal / crystalline_oxide / amorphous_oxide) and ``region``
    (0 core, 1 and 2 grains, 3 amorphous).
    """
    rng = np.random.default_rng(seed)
    radius = diameter_A / 2
    r_core = core_fraction * radius
    seeds = rng.normal(size=(4, 3))
    regions = _CoreShellRegions(seeds / np.linalg.norm(seeds, axis=1, keepdims=True), r_core)

    zr, zr_label, o_xtal, o_xtal_label = _crystalline_parts(rng, regions, radius,
                                                            metal_lattice_A, oxide_lattice_A)
    all_zr, labels, movable = _amorphous_zr(rng, regions, radius, zr, zr_label,
                                            amorphous_zr_zr_A)
    all_zr, labels, movable = _fill_holes(regions, radius, all_zr, labels, movable,
                                          amorphous_zr_zr_A)
    o_am = _amorphous_oxygen(rng, all_zr, labels)
    o_xyz = np.concatenate([o_xtal, o_am])
    o_label = np.concatenate([o_xtal_label, np.full(len(o_am), 3)])
    ok = cKDTree(all_zr).query(o_xyz)[0] > 1.9  # crystalline O too close to another region's Zr
    o_xyz, o_label = o_xyz[ok], o_label[ok]

    voids: list[PlantedVoid] = []
    zr_alive = np.ones(len(all_zr), bool)
    o_alive = np.ones(len(o_xyz), bool)
    pores = _pore_spheres(rng, radius, r_core, n_pores)
    for c, rp in pores:
        inside_zr = np.linalg.norm(all_zr - c, axis=1) < rp
        zr_alive &= ~inside_zr
        o_alive &= np.linalg.norm(o_xyz - c, axis=1) >= rp
        voids.append(PlantedVoid("nano-pore", c[::-1].copy(), float(rp), 0.0, int(inside_zr.sum())))
    chosen = _vacancy_sites(rng, all_zr, labels, zr_alive, radius, r_core, pores, n_vacancies)
    zr_alive[chosen] = False
    for c in chosen:
        voids.append(PlantedVoid("vacancy", all_zr[c][::-1].copy(), 0.0, 0.0, 1))
    zr_final = all_zr[zr_alive]
    for v in voids:
        v.volume_A3 = _void_volume(zr_final, v.center[::-1])

    phase_of_region = np.array(["metal", "crystalline_oxide", "crystalline_oxide", "amorphous_oxide"])
    o_fin, o_lab = o_xyz[o_alive], o_label[o_alive]
    xyz = np.concatenate([zr_final, o_fin])
    lab = np.concatenate([labels[zr_alive], o_lab])
    elements = np.array(["Zr"] * len(zr_final) + ["O"] * len(o_fin))
    atoms = Atoms(xyz[:, ::-1], elements, {"phase": phase_of_region[lab], "region": lab})
    return Phantom(
        "zr_core_shell", atoms, voids,
        description=(f"Zr-ZrO2 core-shell particle, {diameter_A:.0f} A across: fcc Zr core, two "
                     f"cubic ZrO2 grains, amorphous ZrO2; {n_pores} nano-pores, "
                     f"{n_vacancies} Zr vacancies"),
    )


def _circumspheres(tets: np.ndarray):
    """Circumcentres ``(n, 3)`` and radii ``(n,)`` of tetrahedra ``(n, 4, 3)``."""
    a = tets[:, 1:] - tets[:, :1]
    rhs = 0.5 * np.sum(a * a, axis=2)
    det = np.linalg.det(a)
    ok = np.abs(det) > 1e-9
    centre = np.full((len(tets), 3), np.nan)
    centre[ok] = np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]
    radius = np.linalg.norm(centre, axis=1)
    return centre + tets[:, 0], np.where(ok, radius, np.inf)
