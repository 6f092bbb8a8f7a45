"""Dataset preparation scripts; each writes data/<name>/{train.bin, val.bin, meta.json}."""
