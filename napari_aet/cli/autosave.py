"""List the curation autosaves in a folder, or restore one to an atoms file.

  napari-aet autosave list [FOLDER] [--layer NAME]   layer, time, atoms, revision, state
  napari-aet autosave restore SESSION -o ATOMS       snapshot + journal up to the last good
                                                     line, written as .xyz/.extxyz/.csv/.mat
FOLDER defaults to $NAPARI_AET_AUTOSAVE, else ~/.napari-aet/autosave; SESSION is the name in
brackets of a listed line (with or without its folder).
"""

from __future__ import annotations

from pathlib import Path

from napari_aet.cli import CLIError

COMMAND = "autosave"


def add_arguments(parser):
    parser.add_argument("action", choices=["list", "restore"])
    parser.add_argument("target", nargs="?", default=None, metavar="FOLDER|SESSION",
                        help="list: autosave folder; restore: the session to restore")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="list: only autosaves of this layer (e.g. 'atoms curated')")
    parser.add_argument("-o", "--output", default=None, metavar="ATOMS",
                        help="restore: atoms file to write (with the provenance column)")


def run(args) -> int:
    from napari_aet.io.journal import (
        default_folder,
        journal_paths,
        list_sessions,
        restore_session,
    )

    if args.action == "list":
        folder = Path(args.target) if args.target else default_folder()
        if not folder.is_dir():
            raise CLIError(f"autosave folder {folder} does not exist")
        sessions = list_sessions(folder, args.layer)
        for session in sessions:
            print(session.describe())
        print(f"{len(sessions)} autosave(s) in {folder}")
        return 0
    if not args.target or not args.output:
        raise CLIError("restore needs the session and the output file: "
                       "napari-aet autosave restore SESSION -o atoms.extxyz")
    from napari_aet.io.coordinates import write_atoms

    session = Path(args.target)
    if not journal_paths(session)[1].is_file() and not session.is_absolute():
        session = default_folder() / session
    restored = restore_session(session)
    write_atoms(args.output, restored.model.to_atoms())
    for line in restored.skipped:
        print(f"skipped: {line}")
    print(f"{len(restored.model)} atoms (revision {restored.model.revision}) -> {args.output}")
    return 0
