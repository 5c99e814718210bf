"""`trunkline demo`: the forge, the bot and scripted agents on a seeded project.

See docs/demo.md.
"""
