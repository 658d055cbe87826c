"""Binding new sensors to the joint space (ImageBind's recipe), and its evaluation.

:mod:`streambind.bind.recipe` is the pure training recipe, :mod:`streambind.bind.pairs`
turns time-aligned windows into (sensor, vision) pairs, :mod:`streambind.bind.eval`
measures zero-shot accuracy and retrieval against controls.
"""
