"""Expression labels (FER2013 order) and label parsing, with no torch.

Shared by the client, the server's store and metrics, and training; ``core.classifier``
re-exports them for existing callers.
"""

from __future__ import annotations

#: FER2013 class order (its "emotion" column).
EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def check_label(index: int) -> int:
    """``index`` if it names an expression (0..6, FER2013 order); ValueError otherwise.

    The one range check for ground-truth labels: clients, REST and gRPC all go through it so
    that they accept and refuse the same values.
    """
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"label must be an integer, got {index!r}")
    if not 0 <= index < len(EXPRESSIONS):
        raise ValueError(f"label {index} outside 0..{len(EXPRESSIONS) - 1}")
    return index


def parse_label(value: str | int | None) -> int | None:
    """An expression name ("happy", any case) or index (int or digits) -> index; None stays None."""
    if value is None:
        return None
    if isinstance(value, int) or str(value).strip().isdigit():
        return check_label(int(value))
    name = str(value).strip().lower()
    if name not in EXPRESSIONS:
        raise ValueError(f"unknown expression {value!r}; use one of {', '.join(EXPRESSIONS)}")
    return EXPRESSIONS.index(name)
