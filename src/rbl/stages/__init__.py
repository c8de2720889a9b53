"""One module per `rbl` stage: `HELP`, `add_arguments(parser)` (its flags, each with a help text) and
`run(args)`. A stage's code hash is its module's import closure (rbl.codehash), so keep each
stage's imports to what it runs, and this file free of imports.
"""
