"""Encoders: ECG towers (MERL-shaped ResNet1D-18) and text towers; build them through :mod:`medzs.registry`."""
