"""Curation speed at 50,000 atoms: add / remove / undo (with the layer update), review queue
build and next-item navigation, in a real napari viewer (run under Xvfb on a headless box).

    xvfb-run -a python benchmarks/bench_curation.py [--atoms 50000] [--repeats 15]

Targets (issue 6): add, remove, undo <= 50 ms median; review queue <= 2 s; next item <= 100 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def make_model(n_atoms: int, pixel_size_A: float, seed: int = 0):
    """A Zr-like fcc block of about ``n_atoms`` with thermal jitter, in a volume frame."""
    from napari_aet.core.atoms import Atoms

    a = 4.5
    side = int(np.ceil((n_atoms / 4) ** (1 / 3)))
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    cells = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    pos = ((cells + base[None]) * a).reshape(-1, 3)[:n_atoms]
    rng = np.random.default_rng(seed)
    pos = pos + rng.normal(0, 0.05, pos.shape) + 6.0
    elements = np.where(rng.random(len(pos)) < 0.3, "O", "Zr")
    shape = tuple(int(np.ceil((pos.max() + 6.0) / pixel_size_A)) for _ in range(3))
    return Atoms(pos, elements, {"intensity": rng.random(len(pos))}), shape


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_aet import layers as L
    from napari_aet.core import curation as C
    from napari_aet.core.atoms import Atoms
    from napari_aet.core.simulate import voxelize_atoms
    from napari_aet.widgets.curate import CurateWidget

    px = 0.45
    atoms, shape = make_model(args.atoms, px)
    t0 = time.perf_counter()
    volume = voxelize_atoms(atoms, shape, px, blur_sigma_A=0.5).astype(np.float32)
    print(f"{len(atoms)} atoms, volume {shape} ({time.perf_counter() - t0:.1f} s to voxelize)")

    viewer = napari.Viewer()
    L.add_layer(viewer, L.volume_tuple(volume, px))
    L.add_layer(viewer, L.atoms_tuple(atoms, px, name="traced"))
    widget = CurateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.autosave_dir.setText(tempfile.mkdtemp())
    widget.atoms_chooser.set_layer(viewer.layers["traced"])
    widget.volume_chooser.set_layer(viewer.layers["volume"])
    widget.start_session()
    app = QApplication.instance()
    app.processEvents()
    rng = np.random.default_rng(1)

    def timed(fn):
        t = time.perf_counter()
        fn()
        app.processEvents()
        return (time.perf_counter() - t) * 1000

    t_add, t_remove, t_undo = [], [], []
    for _ in range(args.repeats):
        p = atoms.positions[rng.integers(len(atoms))] + rng.normal(0, 0.3, 3)
        t_add.append(timed(lambda p=p: widget.add_at_world(p)))
        t_undo.append(timed(widget.undo))
        row = int(rng.integers(len(widget.model)))
        t_remove.append(timed(lambda row=row: widget.delete_rows([row])))
        t_undo.append(timed(widget.undo))
    assert len(widget.model) == len(atoms)

    vol_atoms = Atoms(widget.session.to_volume_A(widget.model.positions), widget.model.elements)
    t_queue = []
    for _ in range(3):
        t = time.perf_counter()
        items = C.review_queue(vol_atoms, volume, px, d_min_A=2.0, ids=widget.model.ids)
        t_queue.append(time.perf_counter() - t)
    # plant a few items so navigation has somewhere to go
    if len(items) < 5:
        items = [C.ReviewItem("missed_atom", atoms.positions[k], None, 1.0, "add Zr")
                 for k in rng.integers(len(atoms), size=20)]
    widget.set_queue(items)
    t_next = [timed(lambda: widget.goto_item(+1)) for _ in range(args.repeats)]

    def report(name, values, limit, unit="ms"):
        med = float(np.median(values))
        ok = "ok" if med <= limit else "SLOW"
        print(f"{name:<22} median {med:8.1f} {unit}  (limit {limit:g} {unit})  {ok}")

    # napari's own floor: Points.add / remove on a plain 50k layer (no model, no journal)
    plain = viewer.add_points(atoms.positions, size=1.0, name="plain")
    t_plain_add, t_plain_remove = [], []
    for _ in range(args.repeats):
        t_plain_add.append(timed(lambda: plain.add(atoms.positions[:1])))
        t_plain_remove.append(timed(lambda: plain.remove([len(plain.data) - 1])))
    report("napari Points.add", t_plain_add, 50)
    report("napari Points.remove", t_plain_remove, 50)
    report("add (+layer)", t_add, 50)
    report("remove (+layer)", t_remove, 50)
    report("undo (+layer)", t_undo, 50)
    report("review queue build", t_queue, 2.0, "s")
    report("next item", t_next, 100)
    print(f"queue items: {len(items)}")
    viewer.close()


if __name__ == "__main__":
    main()
