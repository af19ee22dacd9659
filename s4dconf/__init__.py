"""s4dconf: the executable S4D conformance spec (see SPEC.md)."""

__version__ = "0.1.0"
#: The version of SPEC.md this code implements; goldens and reports carry it.
SPEC_VERSION = "1.0"
