"""The packed copy of the gelf library is the repository's, byte for byte.

charmcraft packs only this charm's directory (its build instance mounts nothing above it), so
the library is committed here as a copy; the source of truth is lib/ at the repository root.
"""

from pathlib import Path

LIB = Path("lib/charms/falco_k8s/v0/gelf.py")
HERE = Path(__file__).resolve().parents[2]


def test_the_library_copy_matches_the_repository_library():
    copy, source = HERE / LIB, HERE.parent / LIB
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy} drifted from {source}: run `cp {source} {copy}`"
    )
