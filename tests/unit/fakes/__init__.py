"""Stand-ins for upstream programs that cannot run here; each docstring says what it models."""
