"""One thin module per DVC stage: load the stage's params section, read its inputs, call `pipeline`, write
its outputs. Each has `run(params, *, ...)`: the params file, then every path (and the feature or round)
by keyword.

`mer <stage>` (pipeline/cli.py) is the command line of each; dvc.yaml runs those commands.
"""
