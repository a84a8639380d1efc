"""Operations: one module per command's logic. No click, no printing: callers render."""
