"""The repository policy file `.github/trunkline.yml`: model, loader, evaluation.

Pure: no I/O, no clock. Callers hand in text and change descriptions; they get back a
`Policy` or located errors, and evaluations as frozen data.
"""
