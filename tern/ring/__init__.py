"""The virtual storage ring: a pyAT lattice model, the mapping of channels to its elements, and the predicted
effect of magnet writes (no Temporal import). See docs/concepts/ring.md."""
