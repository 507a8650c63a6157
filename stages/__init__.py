"""One thin module per DVC stage: load the stage's params section, call `pipeline`, write outputs.

`mer <stage>` (pipeline/cli.py) is the command line of each; dvc.yaml runs those commands.
"""
