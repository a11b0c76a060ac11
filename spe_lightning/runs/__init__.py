"""The run layer: what a run folder holds and who may write it.

- :mod:`.layout`: where runs live, which folders are runs, a run's files, its status;
- :mod:`.plan`: what a command reads and where it writes, decided before anything is built;
- :mod:`.lock`: the one training process that may write a run;
- :mod:`.checkpoints`: checkpoint files that survive a crash mid-write and load without running code;
- :mod:`.log_names`: every metric and tag a run logs, and their TensorBoard layout;
- :mod:`.naming`: the names runs get from their model, and the command lines that run them.
"""
