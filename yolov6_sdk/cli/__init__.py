"""Command-line entry points: argument parsing only; each command calls the library."""
