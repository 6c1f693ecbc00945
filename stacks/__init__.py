"""Composition: reads the typed StackConfig and the catalogs, decides, instantiates components."""
