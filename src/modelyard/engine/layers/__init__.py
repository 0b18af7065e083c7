"""Building blocks shared by the model architectures (linear, attention, rotary, norms, activations)."""
