"""The operator's station page: live view, NG review, teaching, recipes (docs/DESIGN.md)."""
