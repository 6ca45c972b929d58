"""Autosave sessions: unique names and locks between processes, restore up to the last good
line, a journal that cannot be written refuses edits."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_aet.core.atoms import Atoms
from napari_aet.core.curation import AtomModel
from napari_aet.io.journal import (
    Journal,
    JournalError,
    default_folder,
    is_live,
    list_sessions,
    restore,
    restore_session,
)

EDITS = textwrap.dedent("""
    import numpy as np
    from napari_aet.core.atoms import Atoms
    from napari_aet.core.curation import AtomModel

    def make(seed):
        rng = np.random.default_rng(seed)
        atoms = Atoms(rng.uniform(0, 30, (200, 3)), rng.choice(["Pt", "O"], 200))
        return rng, AtomModel(atoms)

    def edit(rng, model):
        r = rng.random()
        if r < 0.4:
            model.add(rng.uniform(0, 30, 3), "O")
        elif r < 0.6:
            model.remove(model.ids[rng.integers(len(model))], reason="ghost")
        elif r < 0.75:
            model.move(model.ids[rng.integers(len(model))], rng.uniform(0, 30, 3))
        elif r < 0.9:
            model.undo()
        else:
            model.redo()
""")

CHILD = EDITS + textwrap.dedent("""
    import os, sys
    from napari_aet.io.journal import Journal
    folder, seed, done = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng, model = make(seed)
    journal = Journal.start(folder, "Pt curated", model, snapshot_every=40)
    print(journal.journal_path, flush=True)
    n = int(sys.argv[4])
    while n < 0 or model.revision < n:
        edit(rng, model)
        with open(done + ".tmp", "w") as fh:
            fh.write(str(model.revision))
        os.replace(done + ".tmp", done)
        if model.revision == 100:
            print("ready", flush=True)
    journal.close()
""")


def _replayed(seed, revision):
    ns = {}
    exec(compile(EDITS, "edits", "exec"), ns)
    rng, model = ns["make"](seed)
    while model.revision < revision:
        ns["edit"](rng, model)
    return model


def _children(tmp_path, n_edits):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    folder = tmp_path / "autosave"
    folder.mkdir(exist_ok=True)
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(seed),
                               str(tmp_path / f"rev{seed}"), str(n_edits)],
                              stdout=subprocess.PIPE, text=True) for seed in (1, 2)]
    paths = [p.stdout.readline().strip() for p in procs]
    return folder, procs, paths


def test_two_sessions_same_layer_killed_both_restore(tmp_path):
    """Two processes curate layers of the same name in the same folder and are killed with
    SIGKILL: each has its own autosave, and each restores to its own last edit."""
    folder, procs, paths = _children(tmp_path, -1)
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
        assert paths[0] != paths[1]
        # a live session's files are never touched: taking its name is refused
        assert all(is_live(p) for p in paths)
        with pytest.raises(JournalError, match="in use by another live session"):
            Journal(paths[0], AtomModel(Atoms(np.zeros((1, 3)), ["Pt"])))
        assert os.path.exists(paths[0])
        time.sleep(0.2)
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    sessions = list_sessions(folder, "Pt curated")
    assert len(sessions) == 2 and not any(s.live for s in sessions)
    for seed, path in zip((1, 2), paths):
        session = next(s for s in sessions if str(s.path) + ".journal.jsonl" == path)
        assert session.layer == "Pt curated" and session.error == ""
        child_revision = int((tmp_path / f"rev{seed}").read_text())
        # fsync'ed before the child records its revision: at it or one edit later
        assert session.revision in (child_revision, child_revision + 1)
        assert restore(session.path).equals(_replayed(seed, session.revision))


def test_two_sessions_same_layer_clean_runs_keep_final_states(tmp_path):
    folder, procs, _ = _children(tmp_path, 150)
    for p in procs:
        assert p.wait(timeout=120) == 0
    sessions = list_sessions(folder, "Pt curated")
    assert sorted(s.revision for s in sessions) == [150, 150]
    for seed in (1, 2):
        assert any(restore(s.path).equals(_replayed(seed, 150)) for s in sessions)
    assert not list(folder.glob("*.lock"))  # released on close


def _model(n=20):
    rng = np.random.default_rng(0)
    return AtomModel(Atoms(rng.uniform(0, 10, (n, 3)), ["Pt"] * n))


def test_restore_up_to_last_good_line_and_report(tmp_path):
    model = _model()
    journal = Journal(tmp_path / "s", model)
    for k in range(5):
        model.add([k, k, k], "O")
    journal.close()
    good = _model()
    for k in range(2):
        good.add([k, k, k], "O")
    path = tmp_path / "s.journal.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:20] + "#garbage"
    path.write_text("\n".join(lines) + "\n")
    result = restore_session(tmp_path / "s")
    assert result.model.equals(good) and result.model.revision == 2
    assert result.skipped[0] == "s.journal.jsonl line 3: not valid JSON"
    assert "2 line(s) after it" in result.skipped[1]
    with pytest.warns(UserWarning, match="line 3: not valid JSON"):
        assert restore(tmp_path / "s").equals(good)
    # a record that does not replay (unknown atom id) stops there too, nothing half-applied
    record = json.loads(lines[1])
    record["edits"][0]["op"] = "move"
    record["edits"][0].update(id=999, old=[0, 0, 0], new=[1, 1, 1],
                              old_provenance="auto", new_provenance="moved")
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines[:2]) + "\n")
    result = restore_session(tmp_path / "s")
    assert result.model.revision == 1 and "line 2: does not replay" in result.skipped[0]
    # a line cut by a crash at the end is named as such
    path.write_text(lines[0] + "\n" + lines[3][:15])
    assert restore_session(tmp_path / "s").skipped == [
        "s.journal.jsonl line 2: cut by a crash while it was written"]
    # a damaged snapshot is a clear error
    (tmp_path / "s.snapshot.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(JournalError, match="snapshot is damaged"):
        restore_session(tmp_path / "s")


def test_full_disk_refuses_edits_until_written(tmp_path):
    """ENOSPC (the journal's descriptor pointed at /dev/full): the edit made is kept in
    memory, the next ones are refused, and once the disk accepts writes all is written."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    model = _model()
    errors = []
    journal = Journal(tmp_path / "s", model, on_error=errors.append)
    model.add([1, 1, 1], "O")
    saved = os.dup(journal._fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, journal._fd)
    model.add([2, 2, 2], "O")
    assert len(errors) == 1 and "No space left on device" in str(errors[0])
    n = len(model)
    with pytest.raises(JournalError, match="edits are refused"):
        model.add([3, 3, 3], "O")
    with pytest.raises(JournalError):
        model.undo()
    assert len(model) == n and model.revision == 2
    os.dup2(saved, journal._fd)  # space again
    os.close(saved)
    os.close(full)
    model.add([3, 3, 3], "O")
    journal.close()
    assert model.revision == 3 and restore(tmp_path / "s").equals(model)


def test_unwritable_folder_no_journal_no_editing(tmp_path):
    """A folder where no file can be created: a clear JournalError and the model is not
    followed (a widget opens the journal first and does not start the session)."""
    model = _model()
    folder = "/proc/self" if os.path.isdir("/proc/self") else None
    if folder is None:
        pytest.skip("needs /proc")
    with pytest.raises(JournalError, match="cannot autosave to /proc/self"):
        Journal.start(folder, "Pt curated", model)
    assert model.listeners == [] and model.guards == []


def test_sessions_listed_by_layer_name(tmp_path):
    """Layer "Pt curated" never picks up "Pt_curated_2023" (an older name-prefix match)."""
    a = _model()
    Journal.start(tmp_path, "Pt curated", a).close()
    b = _model(7)
    Journal(tmp_path / "Pt_curated_2023", b).close()
    (tmp_path / "Pt_curated_2023.session.json").unlink()  # as written by older versions
    c = _model(5)
    Journal.start(tmp_path, "Pt curated [2]", c).close()
    found = list_sessions(tmp_path, "Pt curated")
    assert sorted(s.atoms for s in found) == [5, 20]
    assert [s.atoms for s in list_sessions(tmp_path, "Pt_curated_2023")] == [7]
    assert len(list_sessions(tmp_path)) == 3
    assert "20 atoms, revision 0" in next(s for s in found if s.atoms == 20).describe()


def test_default_folder_is_private_in_tests():
    """tests/conftest.py points HOME and the autosave folder at a temporary folder."""
    assert "pytest-of" in os.environ["HOME"]
    assert str(default_folder()).startswith(os.environ["HOME"])


def test_cli_lists_and_restores_sessions(tmp_path, capsys):
    from napari_aet.cli import main
    from napari_aet.io.coordinates import read_atoms

    model = _model()
    default_folder().mkdir(parents=True)
    journal = Journal.start(default_folder(), "Pt curated", model)
    model.add([1, 2, 3], "O")
    Journal.start(default_folder(), "Au curated", _model(4)).close()
    assert main(["autosave", "list", "--layer", "Pt curated"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Pt curated  ") and "21 atoms, revision 1 (live" in out[0]
    assert out[-1] == f"1 autosave(s) in {default_folder()}"
    name = journal.journal_path.name[: -len(".journal.jsonl")]
    assert main(["autosave", "restore", name, "-o", str(tmp_path / "a.extxyz")]) == 0
    assert "21 atoms (revision 1)" in capsys.readouterr().out
    atoms = read_atoms(tmp_path / "a.extxyz")
    np.testing.assert_allclose(atoms.positions, model.to_atoms().positions, atol=1e-5)
    journal.close()
    assert main(["autosave", "restore", "nope", "-o", str(tmp_path / "b.xyz")]) == 2
    assert "no autosave snapshot" in capsys.readouterr().err
