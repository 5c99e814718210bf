"""The repository policy file `.github/trunkline.yml`: model, loader, evaluation.

The core (all but `commands` and `bench`) is pure: no I/O, no clock. Callers hand in
text and change descriptions; they get back a `Policy` or located errors, and evaluations
as frozen data.

Modules: `model` (the pydantic model and its defaults), `loader` (text -> `Policy` or
`PolicyError`s with file:line:column), `patterns` (compiled, indexed gitignore patterns),
`codeowners` (CODEOWNERS, last matching line wins), `evaluation` (`Change` ->
`Evaluation`), `commands` (the CLI: the only module that reads files) and `bench`.
Nothing is re-exported here, so importing the CLI stays cheap. Reference: docs/policy.md.
"""
